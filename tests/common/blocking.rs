//! Blocking helpers for tests of `msglog serve` as a process: a ping-pong
//! client, and a small filesystem that fills up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use msglog::proto::Frame;

pub fn bytes_of(fs: &[Frame]) -> Vec<u8> {
    fs.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
}

/// A blocking ping-pong client; `None` from a call means the connection is gone.
pub struct Client(pub TcpStream);

impl Client {
    pub fn login(port: u16, name: &str) -> Option<Client> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut c = Client(s);
        c.0.write_all(&bytes_of(&[
            Frame::Name(name.as_bytes()),
            Frame::Pass(b"A"),
        ]))
        .ok()?;
        (c.reply()? == 0 && c.reply()? == 0).then_some(c)
    }
    pub fn reply(&mut self) -> Option<u8> {
        let mut b = [0u8];
        self.0.read_exact(&mut b).ok()?;
        Some(b[0])
    }
    pub fn send(&mut self, message: &[u8]) -> Option<u8> {
        self.0
            .write_all(&Frame::Msg(message).to_bytes().unwrap())
            .ok()?;
        self.reply()
    }
}

/// A size-limited tmpfs mounted for one test, unmounted on drop.
pub struct SmallFs {
    pub mount: PathBuf,
}

impl SmallFs {
    pub fn mount(at: PathBuf, size: &str) -> Result<SmallFs, String> {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(SmallFs { mount: at })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
