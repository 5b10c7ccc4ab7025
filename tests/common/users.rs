//! Users files for the tests, and logins over TCP against a server that
//! checks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use msglog::proto::Frame;
use msglog::server::users::{hash_password, UsersFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use msglog::server::users::Params;

/// Cheap argon2id parameters, for tests that need many hashes but not
/// their cost.
pub fn cheap() -> Params {
    Params::new(256, 1, 1, None).unwrap()
}

/// Writes a users file with these users, hashed with `params`.
pub fn write_users(path: &Path, users: &[(&[u8], &[u8])], params: &Params) -> PathBuf {
    let mut file = UsersFile::default();
    for (name, password) in users {
        file.set(name, &hash_password(password, params).unwrap())
            .unwrap();
    }
    std::fs::write(path, file.to_bytes()).unwrap();
    path.to_owned()
}

/// Sends NAME and PASS; returns the replies (up to the close, at most 2
/// bytes) and the time from sending to the last reply.
pub async fn login(addr: SocketAddr, name: &[u8], password: &[u8]) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (replies, took) = login_on(&mut s, name, password).await;
    (replies, took)
}

/// [`login`] on a connection that stays open for more frames.
pub async fn login_on(s: &mut TcpStream, name: &[u8], password: &[u8]) -> (Vec<u8>, Duration) {
    let bytes: Vec<u8> = [Frame::Name(name), Frame::Pass(password)]
        .iter()
        .flat_map(|f| f.to_bytes().unwrap())
        .collect();
    let sent = Instant::now();
    s.write_all(&bytes).await.unwrap();
    let mut replies = Vec::new();
    let mut byte = [0u8; 1];
    while replies.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(60), s.read(&mut byte))
            .await
            .expect("a reply within 60 s")
        {
            Ok(1) => replies.push(byte[0]),
            _ => break,
        }
    }
    (replies, sent.elapsed())
}

/// Sends one MSG and waits for its reply.
pub async fn message(s: &mut TcpStream, text: &[u8]) -> u8 {
    s.write_all(&Frame::Msg(text).to_bytes().unwrap())
        .await
        .unwrap();
    let mut reply = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(60), s.read_exact(&mut reply))
        .await
        .expect("a reply within 60 s")
        .unwrap();
    reply[0]
}

/// The median of some durations, in milliseconds.
pub fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}
