//! Every session vector in spec/vectors, over real TCP against the real
//! server: whole, one byte at a time, and frame by frame in tag / length /
//! payload writes like the reference's C test client.

mod common;

use std::time::Duration;

use common::tcp::Harness;
use common::vectors::{self, ClosedBy, SessionVector};
use msglog::server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

/// How the server waits for each read.
#[derive(Clone, Copy)]
enum Wait {
    /// The default: busy-poll briefly after each reply, then sleep.
    Default,
    /// Only the runtime's readiness events.
    NoBusyPoll,
    /// Busy-poll long enough to catch every write of the client directly.
    BusyPoll,
}

async fn run(vector: &SessionVector, sizes: &[usize], way: &str, wait: Wait) {
    let defaults = Limits::default();
    let h = Harness::start_with(Limits {
        max_payload: vector.max_payload.unwrap_or(defaults.max_payload),
        busy_poll: match wait {
            Wait::Default => defaults.busy_poll,
            Wait::NoBusyPoll => Duration::ZERO,
            Wait::BusyPoll => Duration::from_millis(100),
        },
        ..defaults
    })
    .await;
    let mut stream = TcpStream::connect(h.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.split();
    let send = async {
        for chunk in vectors::split(&vector.client, sizes) {
            // The server may close before the client is done: bytes after
            // the closing frame are never processed, so a failed write is fine.
            if wr.write_all(chunk).await.is_err() {
                return;
            }
            if sizes.len() > 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        //= spec/protocol.md#end-of-stream
        //= type=test
        //# If the stream ends at a frame boundary, the server MUST close the
        //# connection without sending anything.
        if vector.closed_by == ClosedBy::Client {
            let _ = wr.shutdown().await;
        }
    };
    let receive = async {
        let mut replies = Vec::new();
        tokio::time::timeout(TIMEOUT, rd.read_to_end(&mut replies))
            .await
            .unwrap_or_else(|_| panic!("{} ({way}): the server did not close", vector.id))
            .unwrap_or_else(|e| panic!("{} ({way}): connection failed: {e}", vector.id));
        replies
    };
    let ((), replies) = tokio::join!(send, receive);
    assert_eq!(replies, vector.replies, "{} ({way}): replies", vector.id);
    // Our end of stream ends the server's linger at once.
    drop(stream);
    let log = h.stop_raw().await;
    assert_eq!(
        String::from_utf8_lossy(&log),
        String::from_utf8_lossy(&vector.log_bytes()),
        "{} ({way}): log",
        vector.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_over_tcp() {
    let all = vectors::sessions();
    assert!(all.len() >= 40, "only {} vectors", all.len());
    for vector in &all {
        let whole = [vector.client.len()];
        run(vector, &whole, "whole", Wait::Default).await;
        run(vector, &whole, "whole, no busy-poll", Wait::NoBusyPoll).await;
        let parts = vectors::frame_part_sizes(&vector.client);
        run(vector, &parts, "tag/length/payload", Wait::Default).await;
        if vector.client.len() <= 256 {
            let bytes = vec![1; vector.client.len()];
            run(vector, &bytes, "one byte at a time", Wait::Default).await;
            let way = "one byte at a time, busy-polled";
            run(vector, &bytes, way, Wait::BusyPoll).await;
        }
    }
}
