//! A whole connection run in memory through the session engine, with an
//! in-memory text log: the executor of the test vectors, the property tests
//! and the fuzz targets. The log always succeeds and time never moves, so a
//! run depends on its bytes alone; the engine's timers, shutdown and failing
//! appends are exercised by `check::engine`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::engine::{AppendSink, End, Engine, PasswordCheck, Settings};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::machine::State;
use crate::proto::record::encode_record;

/// Everything a connection produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTranscript {
    /// Reply bytes, in order.
    pub replies: Vec<u8>,
    /// Log bytes appended, in order.
    pub log: Vec<u8>,
    /// The rule of the 0xFF, if the session ended with one.
    pub rule: Option<&'static str>,
    /// The server closed the connection (after CLOSE or 0xFF).
    pub closed_by_server: bool,
    /// Bytes that arrived after the server closed, and were not processed.
    pub ignored_after_close: u64,
    /// The client's end of stream cut a frame short.
    pub mid_frame: bool,
}

struct TextLog(Vec<u8>);

impl AppendSink for TextLog {
    fn append(&mut self, name: &[u8], message: &[u8]) {
        encode_record(&mut self.0, name, message);
    }
}

/// One connection through the real engine, fed by the caller.
#[derive(Debug)]
pub struct MemorySession {
    engine: Engine,
    now: Instant,
    replies: Vec<u8>,
    log: Vec<u8>,
}

/// Settings with the protocol's payload limit or a lower one, and timeouts
/// that never fire in a run whose clock stands still.
pub fn settings(limit: Option<u16>) -> Settings {
    Settings {
        passwords: PasswordCheck::ReferenceRule,
        max_payload: limit.map_or(MAX_PAYLOAD_LEN, usize::from),
        handshake_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(300),
        shutdown_timeout: Duration::from_secs(5),
    }
}

impl MemorySession {
    /// A session whose payload limit is the protocol's, or `limit`.
    pub fn new(limit: Option<u16>) -> Self {
        let now = Instant::now();
        MemorySession {
            engine: Engine::new(Arc::new(settings(limit)), now),
            now,
            replies: Vec::new(),
            log: Vec::new(),
        }
    }

    pub fn state(&self) -> &State {
        self.engine.state()
    }

    /// Bytes the engine holds as the start of an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.engine.buffered()
    }

    /// Replies so far.
    pub fn replies(&self) -> &[u8] {
        &self.replies
    }

    /// Log bytes so far.
    pub fn log(&self) -> &[u8] {
        &self.log
    }

    /// Bytes that arrived after the close and were not processed.
    pub fn ignored(&self) -> u64 {
        self.engine.ignored()
    }

    /// The rule of the 0xFF that closed the session, once it did.
    pub fn rule(&self) -> Option<&'static str> {
        match self.engine.end() {
            Some(End::Rejected(v)) => Some(v.rule()),
            _ => None,
        }
    }

    /// Feeds bytes as they arrived from the network, in any chunking; the
    /// log takes every append and every reply is sent at once.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut log = TextLog(std::mem::take(&mut self.log));
        let processed = self.engine.handle_input(chunk, self.now, &mut log);
        self.log = log.0;
        if processed.appended > 0 {
            self.engine.append_done(Ok(()), self.now);
        }
        let out = self.engine.poll_transmit();
        self.replies.extend_from_slice(out);
        let sent = out.len();
        self.engine.transmitted(sent, self.now);
    }

    /// Ends the session with the client's end of stream.
    pub fn finish(mut self) -> SessionTranscript {
        let closed_by_server = self.engine.end().is_some();
        self.engine.handle_eof();
        let rule = self.rule();
        SessionTranscript {
            mid_frame: matches!(self.engine.end(), Some(End::ClientEndedMidFrame { .. })),
            ignored_after_close: self.engine.ignored(),
            replies: self.replies,
            log: self.log,
            rule,
            closed_by_server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::Frame;

    fn stream(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
    }

    #[test]
    fn happy_session_in_any_chunking() {
        let bytes = stream(&[
            Frame::Name(b"MyTestCase"),
            Frame::Pass(b"A"),
            Frame::Msg(b"Hello!"),
            Frame::Close,
        ]);
        for chunk in 1..=bytes.len() {
            let mut s = MemorySession::new(None);
            for piece in bytes.chunks(chunk) {
                s.feed(piece);
            }
            let t = s.finish();
            assert!(!t.mid_frame);
            assert_eq!(t.replies, [0, 0, 0, 0]);
            assert_eq!(t.log, b"[MyTestCase]: Hello!\r\n");
            assert!(t.closed_by_server);
        }
    }

    #[test]
    fn nothing_after_a_reject_is_processed() {
        let mut bytes = stream(&[Frame::Name(b"u"), Frame::Pass(b"B")]);
        bytes.extend(stream(&[Frame::Msg(b"never"), Frame::Close]));
        let mut s = MemorySession::new(None);
        s.feed(&bytes);
        let t = s.finish();
        assert_eq!(t.replies, [0x00, 0xFF]);
        assert_eq!(t.rule, Some("PasswordRejected"));
        assert!(t.log.is_empty());
        assert_eq!(t.ignored_after_close, 8 + 1);
    }

    #[test]
    fn end_of_stream_mid_frame_writes_nothing() {
        let mut bytes = stream(&[Frame::Name(b"u"), Frame::Pass(b"A")]);
        bytes.extend_from_slice(&[3, 5, 0, b'h', b'e']);
        let mut s = MemorySession::new(None);
        s.feed(&bytes);
        let t = s.finish();
        assert!(t.mid_frame);
        assert!(t.log.is_empty());
        assert_eq!(t.replies, [0, 0]);
    }
}
