//! The session engine's invariants under every kind of event: reads in any
//! chunking, the client's end of stream, time passing and timers firing,
//! the server's shutdown, the client reading only some of its replies, and
//! the log taking its time or failing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ensure, Broken, Checked, Hex};
use crate::proto::engine::{AppendFailure, AppendSink, Engine, PasswordCheck, Settings};
use crate::proto::frame;
use crate::proto::machine::{ACK, NAK};
use crate::proto::record::{encode_record, records};
use crate::testkit::reference::reference_split;

/// Short timeouts, so that a script of a few steps reaches every one.
const HANDSHAKE: Duration = Duration::from_millis(1_000);
const IDLE: Duration = Duration::from_millis(3_000);
const SHUTDOWN: Duration = Duration::from_millis(500);
/// Timer firings that must end any connection left to itself.
const MAX_FIRINGS: usize = 8;

/// One step of a script, decoded from a `u16`: the low three bits say what
/// happens, the rest (`arg`, 0 to 8191) how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next `arg + 1` bytes of the stream arrive, if the engine reads.
    Read(usize),
    /// The client ends its stream.
    Eof,
    /// `arg` milliseconds pass.
    Advance(u64),
    /// The shell's timer fires now (early or not).
    Fire,
    /// Time jumps to the engine's next deadline, and the timer fires.
    FireAtDeadline,
    /// The server shuts down.
    Shutdown,
    /// The client reads up to `arg` bytes of its replies.
    ClientReads(usize),
    /// The log finishes the outstanding append (bit 1 of `arg` clear): it
    /// stores every message, or (bit 0 set) fails after storing the first
    /// `arg >> 2` of them (a file stores none; a replicated stream may).
    LogDone { failed_after: Option<usize> },
    /// The outstanding password check answers: verified when bit 0 of `arg`
    /// is set (bit 1 set).
    Verdict { verified: bool },
}

impl Step {
    pub fn decode(op: u16) -> Step {
        let arg = usize::from(op >> 3);
        match op & 7 {
            0 => Step::Read(arg + 1),
            1 => Step::Eof,
            2 => Step::Advance(arg as u64),
            3 => Step::Fire,
            4 => Step::FireAtDeadline,
            5 => Step::Shutdown,
            6 => Step::ClientReads(arg),
            _ if arg & 2 == 0 => Step::LogDone {
                failed_after: (arg & 1 == 1).then_some(arg >> 2),
            },
            _ => Step::Verdict {
                verified: arg & 1 == 1,
            },
        }
    }

    /// The `u16` that decodes to this step (seeds are written with it).
    pub fn encode(self) -> u16 {
        let (kind, arg) = match self {
            Step::Read(n) => (0, n.saturating_sub(1)),
            Step::Eof => (1, 0),
            Step::Advance(ms) => (2, ms as usize),
            Step::Fire => (3, 0),
            Step::FireAtDeadline => (4, 0),
            Step::Shutdown => (5, 0),
            Step::ClientReads(n) => (6, n),
            Step::LogDone { failed_after } => (7, failed_after.map_or(0, |k| 1 | (k << 2))),
            Step::Verdict { verified } => (7, 2 | usize::from(verified)),
        };
        (u16::try_from(arg.min(8191)).unwrap_or(8191) << 3) | kind
    }
}

struct Log(Vec<u8>);

impl AppendSink for Log {
    fn append(&mut self, name: &[u8], message: &[u8]) {
        encode_record(&mut self.0, name, message);
    }
}

/// A connection driven by a script, as a shell would drive it.
struct Run<'a> {
    engine: Engine,
    now: Instant,
    stream: &'a [u8],
    /// Bytes of `stream` handed to the engine.
    consumed: usize,
    /// Log bytes written (only batches the log took).
    log: Vec<u8>,
    /// Records of the outstanding append, not yet in `log`.
    pending: Option<Vec<u8>>,
    /// A password check the shell took and has not answered.
    verifying: bool,
    /// Reply bytes the client has read.
    received: Vec<u8>,
    /// The latest a connection may end after the shutdown came.
    shutdown_bound: Option<Instant>,
}

impl Run<'_> {
    fn context(&self) -> String {
        format!(
            "after {} of {} bytes ({}), replies read {}, state {}",
            self.consumed,
            self.stream.len(),
            Hex(&self.stream[..self.consumed]),
            Hex(&self.received),
            self.engine.state().label()
        )
    }

    fn step(&mut self, step: Step) -> Checked {
        match step {
            Step::Read(n) => {
                if !self.engine.wants_input() {
                    return Ok(());
                }
                let end = (self.consumed + n).min(self.stream.len());
                if end == self.consumed {
                    return Ok(());
                }
                let mut log = Log(Vec::new());
                let processed =
                    self.engine
                        .handle_input(&self.stream[self.consumed..end], self.now, &mut log);
                self.consumed = end;
                ensure(
                    (processed.appended > 0) != log.0.is_empty(),
                    "appends are counted as they are made",
                    || format!("{processed:?}, {} record bytes", log.0.len()),
                )?;
                if processed.appended > 0 {
                    self.pending = Some(log.0);
                }
                self.take_verify_request();
            }
            Step::Eof => {
                if self.engine.wants_input() {
                    self.engine.handle_eof();
                }
            }
            Step::Advance(ms) => self.now += Duration::from_millis(ms),
            Step::Fire => self.engine.handle_timeout(self.now),
            Step::FireAtDeadline => {
                if let Some(deadline) = self.engine.poll_timeout() {
                    self.now = self.now.max(deadline);
                    let before = (self.engine.poll_transmit().to_vec(), self.engine.end());
                    self.engine.handle_timeout(self.now);
                    let after = (self.engine.poll_transmit().to_vec(), self.engine.end());
                    ensure(
                        before != after || self.engine.poll_timeout() > Some(deadline),
                        "a timer that is due does something",
                        || format!("deadline {deadline:?} came and went; {}", self.context()),
                    )?;
                }
            }
            Step::Shutdown => {
                if self.shutdown_bound.is_none() {
                    self.shutdown_bound = Some(self.now + SHUTDOWN);
                }
                self.engine.handle_shutdown(self.now);
            }
            Step::ClientReads(n) => {
                let out = self.engine.poll_transmit();
                let n = n.min(out.len());
                self.received.extend_from_slice(&out[..n]);
                self.engine.transmitted(n, self.now);
            }
            Step::Verdict { verified } => {
                if self.verifying {
                    self.verifying = false;
                    let mut log = Log(Vec::new());
                    let processed = self.engine.verify_done(verified, self.now, &mut log);
                    if processed.appended > 0 {
                        self.pending = Some(log.0);
                    }
                    self.take_verify_request();
                }
            }
            Step::LogDone { failed_after } => {
                if let Some(records) = self.pending.take() {
                    let result = match failed_after {
                        None => {
                            self.log.extend_from_slice(&records);
                            Ok(())
                        }
                        Some(stored) => {
                            // The first `stored` records made it (at most
                            // the batch: a sink cannot store more).
                            let ends = records.windows(2).enumerate().filter(|(_, w)| w == b"\r\n");
                            let cut = ends.map(|(i, _)| i + 2).take(stored).last().unwrap_or(0);
                            let stored = records[..cut].windows(2).filter(|w| w == b"\r\n").count();
                            self.log.extend_from_slice(&records[..cut]);
                            Err(AppendFailure {
                                stored: stored as u64,
                            })
                        }
                    };
                    self.engine.append_done(result, self.now);
                    // Time the log took does not count against the shutdown.
                    self.shutdown_bound = self.shutdown_bound.map(|b| b.max(self.now));
                }
            }
        }
        self.invariants()
    }

    fn take_verify_request(&mut self) {
        if self.engine.take_verify_request().is_some() {
            self.verifying = true;
        }
    }

    fn invariants(&self) -> Checked {
        let e = &self.engine;
        ensure(
            !self.verifying || (!e.wants_input() && self.pending.is_none()),
            "nothing behind a PASS is processed before its verdict",
            || self.context(),
        )?;
        ensure(
            self.pending.is_none() || e.poll_transmit().is_empty(),
            "no reply goes before the log took the batch",
            || format!("{} waiting; {}", Hex(e.poll_transmit()), self.context()),
        )?;
        ensure(
            !e.wants_input() || (self.pending.is_none() && e.poll_transmit().is_empty()),
            "no reading while replies or an append are outstanding",
            || self.context(),
        )?;
        ensure(
            self.pending.is_none() || e.poll_timeout().is_none(),
            "no timer runs while the log writes",
            || self.context(),
        )?;
        let cap = frame::HEADER_LEN + frame::MAX_PAYLOAD_LEN - 1;
        ensure(
            e.buffered() <= cap,
            "the engine holds less than one maximal frame",
            || format!("{} bytes held; {}", e.buffered(), self.context()),
        )?;
        if let Some(bound) = self.shutdown_bound {
            let waiting = e.poll_close().is_none() && self.pending.is_none();
            ensure(
                !waiting || e.poll_timeout().is_some_and(|d| d <= bound),
                "after a shutdown, the connection's deadline is within the shutdown timeout",
                || format!("next deadline {:?}; {}", e.poll_timeout(), self.context()),
            )?;
        }
        let all = [&self.received[..], e.poll_transmit()].concat();
        ensure(
            all.iter().all(|&b| b == ACK || b == NAK)
                && all
                    .iter()
                    .position(|&b| b == NAK)
                    .is_none_or(|i| i + 1 == all.len()),
            "replies are 0x00 and 0xFF, and a 0xFF is the last",
            || format!("replies {}; {}", Hex(&all), self.context()),
        )?;
        self.acked_messages_are_logged()
    }

    /// Every MSG the client saw acknowledged has its record in the log, in
    /// order: the k-th reply answers the k-th frame of the stream.
    fn acked_messages_are_logged(&self) -> Checked {
        let (frames, _) = reference_split(&self.stream[..self.consumed], frame::MAX_PAYLOAD_LEN);
        let name = frames.first().and_then(|f| f.payload).unwrap_or_default();
        let acked: Vec<(Vec<u8>, Vec<u8>)> = self
            .received
            .iter()
            .zip(&frames)
            .filter(|(&reply, f)| reply == ACK && f.tag == frame::TAG_MSG)
            .map(|(_, f)| (name.to_vec(), f.payload.unwrap_or_default().to_vec()))
            .collect();
        let logged: Vec<(Vec<u8>, Vec<u8>)> = records(&self.log)
            .filter_map(Result::ok)
            .map(|r| (r.name, r.message))
            .collect();
        ensure(
            logged.len() >= acked.len() && logged[..acked.len()] == acked[..],
            "no ack without its record in the log",
            || {
                format!(
                    "{} acked MSGs, log holds {}; {}",
                    acked.len(),
                    logged.len(),
                    self.context()
                )
            },
        )
    }

    /// Left to itself (the client reads nothing more, the log completes, a
    /// password check never answers), every connection ends within a few
    /// timer firings.
    fn ends_by_itself(&mut self) -> Checked {
        for _ in 0..MAX_FIRINGS {
            if self.engine.poll_close().is_some() {
                return Ok(());
            }
            if self.pending.is_some() {
                self.step(Step::LogDone { failed_after: None })?;
                continue;
            }
            let Some(deadline) = self.engine.poll_timeout() else {
                return Err(Broken {
                    invariant: "every connection ends by itself",
                    detail: format!("nothing to wait for, yet not closed; {}", self.context()),
                });
            };
            self.now = self.now.max(deadline);
            self.engine.handle_timeout(self.now);
            self.invariants()?;
        }
        ensure(
            self.engine.poll_close().is_some(),
            "every connection ends by itself",
            || format!("still open after {MAX_FIRINGS} timers; {}", self.context()),
        )
    }
}

/// The engine's invariants over the client's `bytes` and a `script` of
/// events (each `u16` is a [`Step`]), with a payload limit if given:
///
/// - no reply before the log took its batch, no reading while replies or
///   an append are outstanding, no timer while the log writes;
/// - nothing behind a PASS is processed before its verdict (the engine
///   asks the shell for every password here);
/// - replies are 0x00 and 0xFF only, and a 0xFF is the last;
/// - every MSG acknowledged to the client has its record in the log, in
///   order (a failed append acknowledges nothing of its batch);
/// - a timer that is due does something;
/// - the engine holds less than one maximal frame;
/// - left to itself, every connection ends within a few timer firings,
///   even when the client reads nothing;
/// - after a shutdown, the connection's next deadline is never later than
///   the shutdown timeout (plus the time the log took).
pub fn engine(bytes: &[u8], script: &[u16], limit: Option<u16>) -> Checked {
    let now = Instant::now();
    let settings = Settings {
        passwords: PasswordCheck::Asked,
        max_payload: limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from),
        handshake_timeout: HANDSHAKE,
        idle_timeout: IDLE,
        shutdown_timeout: SHUTDOWN,
    };
    let mut run = Run {
        engine: Engine::new(Arc::new(settings), now),
        now,
        stream: bytes,
        consumed: 0,
        log: Vec::new(),
        pending: None,
        verifying: false,
        received: Vec::new(),
        shutdown_bound: None,
    };
    for &op in script {
        run.step(Step::decode(op))?;
    }
    run.ends_by_itself()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::Frame;

    fn login_and(msgs: &[&[u8]]) -> Vec<u8> {
        let mut frames = vec![Frame::Name(b"u"), Frame::Pass(b"A")];
        frames.extend(msgs.iter().map(|m| Frame::Msg(m)));
        frames.iter().flat_map(|f| f.to_bytes().unwrap()).collect()
    }

    fn script(steps: &[Step]) -> Vec<u16> {
        steps.iter().map(|s| s.encode()).collect()
    }

    #[test]
    fn steps_round_trip_through_their_encoding() {
        for step in [
            Step::Read(1),
            Step::Read(8192),
            Step::Eof,
            Step::Advance(8191),
            Step::Fire,
            Step::FireAtDeadline,
            Step::Shutdown,
            Step::ClientReads(7),
            Step::LogDone {
                failed_after: Some(0),
            },
            Step::LogDone { failed_after: None },
        ] {
            assert_eq!(Step::decode(step.encode()), step);
        }
    }

    #[test]
    fn ordinary_and_hostile_scripts_hold() {
        use Step::*;
        let bytes = login_and(&[b"one", b"two", b"three"]);
        let scripts = [
            vec![Read(100), LogDone { failed_after: None }, ClientReads(100)],
            vec![
                Read(9),
                LogDone {
                    failed_after: Some(1),
                },
                ClientReads(1),
            ],
            vec![
                Read(12),
                Shutdown,
                Advance(400),
                Read(3),
                LogDone { failed_after: None },
            ],
            vec![
                Read(100),
                LogDone { failed_after: None },
                Shutdown,
                FireAtDeadline,
            ],
            vec![Read(4), FireAtDeadline, FireAtDeadline],
            vec![
                Read(14),
                LogDone { failed_after: None },
                ClientReads(2),
                Advance(8191),
            ],
            vec![Read(3), Eof],
        ];
        for s in scripts {
            engine(&bytes, &script(&s), None).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        }
    }
}
