//! A whole connection run in memory: decoder, state machine and an in-memory
//! log. The reference executor for test vectors, property tests and fuzzing;
//! the server's shell does the same with real IO.

use super::frame::{Decoder, FrameError};
use super::machine::{fail, step, Effect, Response, State, Violation};
use super::record::encode_record;

/// Everything a connection produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Reply bytes, in order.
    pub replies: Vec<u8>,
    /// Log bytes appended, in order.
    pub log: Vec<u8>,
    /// Every response with its rule, for reports.
    pub responses: Vec<Response>,
    /// The server closed the connection (after CLOSE or 0xFF).
    pub closed_by_server: bool,
    /// Bytes that arrived after the server closed, and were not processed.
    pub ignored_after_close: usize,
}

/// One connection's protocol state plus its decoder.
#[derive(Debug)]
pub struct Session {
    decoder: Decoder,
    state: State,
    transcript: Transcript,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Self::with_decoder(Decoder::new())
    }

    pub fn with_decoder(decoder: Decoder) -> Self {
        //= spec/protocol.md#states
        //# The server MUST start each connection in state C.
        Session {
            decoder,
            state: State::Connected,
            transcript: Transcript::default(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Bytes buffered as the start of an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Feeds bytes as they arrived from the network, in any chunking.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.state.is_closed() {
                self.transcript.ignored_after_close += chunk.len();
                return;
            }
            let took = self.decoder.fill(chunk);
            chunk = &chunk[took..];
            let buffered = self.decoder.buffered();
            self.drain();
            // A full decoder with no complete frame would loop here forever;
            // the decoder's bound makes that impossible, so fail loudly if not.
            assert!(
                took > 0 || self.state.is_closed() || self.decoder.buffered() < buffered,
                "decoder stalled: it took no bytes and yielded no frame with {buffered} bytes buffered"
            );
        }
    }

    //= spec/protocol.md#acknowledgement
    //# The server MUST process pipelined frames, sent without waiting for replies, in the order they arrived.
    //= spec/protocol.md#acknowledgement
    //# The server MUST send the replies of a connection in the order of the frames they answer.
    fn drain(&mut self) {
        while !self.state.is_closed() {
            let state = std::mem::replace(&mut self.state, State::Closed);
            let (next, response, effect) = match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    let (next, response, effect) = step(state, frame);
                    if let Some(Effect::Append { name, message }) = &effect {
                        encode_record(&mut self.transcript.log, name, message);
                    }
                    (next, response, effect.map(|e| matches!(e, Effect::Close)))
                }
                Ok(None) => {
                    self.state = state;
                    return;
                }
                Err(FrameError::PayloadOverLimit { len, max }) => {
                    let (next, response, effect) =
                        fail(state, Violation::PayloadOverLimit { len, max });
                    (next, response, effect.map(|e| matches!(e, Effect::Close)))
                }
            };
            self.state = next;
            self.transcript.replies.extend(response.byte());
            self.transcript.responses.push(response);
            if effect == Some(true) {
                self.transcript.closed_by_server = true;
            }
        }
        // Whatever is still buffered arrived after the close.
        self.transcript.ignored_after_close += self.decoder.buffered();
        self.decoder = Decoder::with_max_payload(0);
    }

    /// Ends the session (the client's end of stream). Returns the transcript
    /// and whether the stream ended in the middle of a frame.
    //= spec/protocol.md#end-of-stream
    //# If the stream ends in the middle of a frame, the server MUST
    //# discard the partial frame without replying or writing to the log.
    pub fn finish(self) -> (Transcript, bool) {
        let mid_frame = !self.state.is_closed() && !self.decoder.is_at_boundary();
        (self.transcript, mid_frame)
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
            let mut s = Session::new();
            for piece in bytes.chunks(chunk) {
                s.feed(piece);
            }
            let (t, mid) = s.finish();
            assert!(!mid);
            assert_eq!(t.replies, [0, 0, 0, 0]);
            assert_eq!(t.log, b"[MyTestCase]: Hello!\r\n");
            assert!(t.closed_by_server);
        }
    }

    #[test]
    fn nothing_after_a_reject_is_processed() {
        let mut bytes = stream(&[Frame::Name(b"u"), Frame::Pass(b"B")]);
        bytes.extend(stream(&[Frame::Msg(b"never"), Frame::Close]));
        let mut s = Session::new();
        s.feed(&bytes);
        let (t, _) = s.finish();
        assert_eq!(t.replies, [0x00, 0xFF]);
        assert!(t.log.is_empty());
        assert_eq!(t.ignored_after_close, 8 + 1);
    }

    #[test]
    fn end_of_stream_mid_frame_writes_nothing() {
        let mut bytes = stream(&[Frame::Name(b"u"), Frame::Pass(b"A")]);
        bytes.extend_from_slice(&[3, 5, 0, b'h', b'e']);
        let mut s = Session::new();
        s.feed(&bytes);
        let (t, mid) = s.finish();
        assert!(mid);
        assert!(t.log.is_empty());
        assert_eq!(t.replies, [0, 0]);
    }
}
