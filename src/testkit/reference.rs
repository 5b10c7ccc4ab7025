//! References written straight from spec/protocol.md, apart from `proto`
//! on purpose: a frame splitter ([`reference_split`]) and the state table
//! ([`model_step`], [`model_run`]). The checks compare the real code against
//! them; a bug then has to be made twice, the same way, to go unseen. The
//! state-table model is itself checked against spec/vectors.

use crate::proto::frame;
use crate::proto::machine::{State, ACK, NAK};
use crate::proto::record::encode_record;

/// One frame as the reference splitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefFrame<'a> {
    pub tag: u8,
    /// `None` for the one-byte frames (CLOSE and unknown tags).
    pub payload: Option<&'a [u8]>,
    /// The exact wire bytes of this frame.
    pub wire: &'a [u8],
    /// Offset just past this frame in the stream.
    pub end: usize,
}

/// How the reference splitter's walk over a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefEnd {
    /// On a frame boundary.
    Clean,
    /// Inside a frame that starts at `from`; `total`, once the length field
    /// was seen, is that frame's whole wire length.
    Partial { from: usize, total: Option<usize> },
    /// A frame at `at` announced `len` payload bytes, over the limit.
    OverLimit { at: usize, len: usize },
}

/// The frames of `bytes` per spec/protocol.md#frame, written without
/// `frame.rs`: tags 1..=3 carry a u16 little-endian length and a payload,
/// every other tag byte is a frame of one byte.
pub fn reference_split(bytes: &[u8], max_payload: usize) -> (Vec<RefFrame<'_>>, RefEnd) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        let Some(&tag) = rest.first() else {
            return (frames, RefEnd::Clean);
        };
        if !(1..=3).contains(&tag) {
            frames.push(RefFrame {
                tag,
                payload: None,
                wire: &rest[..1],
                end: at + 1,
            });
            at += 1;
            continue;
        }
        if rest.len() < 3 {
            return (
                frames,
                RefEnd::Partial {
                    from: at,
                    total: None,
                },
            );
        }
        let len = usize::from(rest[1]) + 256 * usize::from(rest[2]);
        if len > max_payload {
            return (frames, RefEnd::OverLimit { at, len });
        }
        if rest.len() < 3 + len {
            return (
                frames,
                RefEnd::Partial {
                    from: at,
                    total: Some(3 + len),
                },
            );
        }
        frames.push(RefFrame {
            tag,
            payload: Some(&rest[3..3 + len]),
            wire: &rest[..3 + len],
            end: at + 3 + len,
        });
        at += 3 + len;
    }
}

/// The spec's states, with the name a client gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelState {
    /// C: expects NAME.
    Connected,
    /// N: expects PASS.
    Named(Vec<u8>),
    /// P: any number of MSG.
    Authenticated(Vec<u8>),
    /// X: nothing more is processed.
    Closed,
}

impl ModelState {
    /// The label of spec/protocol.md#states.
    pub fn label(&self) -> &'static str {
        match self {
            ModelState::Connected => "C",
            ModelState::Named(_) => "N",
            ModelState::Authenticated(_) => "P",
            ModelState::Closed => "X",
        }
    }

    /// The model state a real `State` stands for.
    pub fn of(state: &State) -> ModelState {
        match state {
            State::Connected => ModelState::Connected,
            // With the reference's password rule a PASS is decided at once;
            // a connection waiting for a verdict is still on its PASS.
            State::Named { name } | State::Verifying { name } => ModelState::Named(name.to_vec()),
            State::Authenticated { name } => ModelState::Authenticated(name.to_vec()),
            State::Closed => ModelState::Closed,
        }
    }
}

/// One row of the state table: what a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStep {
    pub next: ModelState,
    /// 0x00 or 0xFF; `None` once closed.
    pub reply: Option<u8>,
    /// The rule a rejection names (spec's names).
    pub rule: Option<&'static str>,
    /// (name, message) appended to the log.
    pub append: Option<(Vec<u8>, Vec<u8>)>,
}

fn accept(next: ModelState) -> ModelStep {
    ModelStep {
        next,
        reply: Some(ACK),
        rule: None,
        append: None,
    }
}

fn refuse(rule: &'static str) -> ModelStep {
    ModelStep {
        next: ModelState::Closed,
        reply: Some(NAK),
        rule: Some(rule),
        append: None,
    }
}

/// The state table of spec/protocol.md#states, from (state, tag, payload).
/// `payload` is ignored for one-byte frames.
pub fn model_step(state: &ModelState, tag: u8, payload: &[u8]) -> ModelStep {
    use ModelState::*;
    match (state, tag) {
        (Closed, _) => ModelStep {
            next: Closed,
            reply: None,
            rule: None,
            append: None,
        },
        (_, 4) => accept(Closed),
        (_, 0 | 5..=255) => refuse("UnknownTag"),
        (Connected, 1) => match payload.first() {
            None => refuse("EmptyName"),
            Some(0) => refuse("NameStartsWithNul"),
            Some(_) => accept(Named(payload.to_vec())),
        },
        (Named(name), 2) => match payload.first() {
            None => refuse("EmptyPassword"),
            Some(b) if b % 2 == 0 => refuse("PasswordRejected"),
            Some(_) => accept(Authenticated(name.clone())),
        },
        (Authenticated(name), 3) => match payload {
            [] => refuse("EmptyMessage"),
            _ => ModelStep {
                append: Some((name.clone(), payload.to_vec())),
                ..accept(Authenticated(name.clone()))
            },
        },
        _ => refuse("OutOfOrder"),
    }
}

/// A frame whose length is over the server's limit, in any state.
pub fn model_over_limit(state: &ModelState) -> ModelStep {
    match state {
        ModelState::Closed => model_step(state, 0, &[]),
        _ => refuse("PayloadOverLimit"),
    }
}

/// One transaction of a model run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTx {
    pub before: ModelState,
    pub step: ModelStep,
    /// Stream offset at which the transaction is complete (its reply is due
    /// once this many bytes arrived).
    pub due: usize,
}

/// What the model expects from a whole connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRun {
    pub transactions: Vec<ModelTx>,
    pub closed_by_server: bool,
    /// Bytes not taken as a processed frame: everything after the closing
    /// frame (after an over-limit frame's header, its payload).
    pub ignored_after_close: usize,
    /// The client's end of stream cut a frame short.
    pub mid_frame: bool,
}

impl ModelRun {
    pub fn replies(&self) -> Vec<u8> {
        self.transactions
            .iter()
            .filter_map(|t| t.step.reply)
            .collect()
    }

    pub fn appended(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.transactions
            .iter()
            .filter_map(|t| t.step.append.clone())
            .collect()
    }

    pub fn log(&self) -> Vec<u8> {
        let mut log = Vec::new();
        for (name, message) in self.appended() {
            encode_record(&mut log, &name, &message);
        }
        log
    }
}

/// Runs the model over a whole client stream.
pub fn model_run(bytes: &[u8], limit: Option<u16>) -> ModelRun {
    let max = limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    let (frames, end) = reference_split(bytes, max);
    let mut state = ModelState::Connected;
    let mut transactions = Vec::new();
    let mut processed = 0;
    for f in frames {
        if state == ModelState::Closed {
            break;
        }
        let step = model_step(&state, f.tag, f.payload.unwrap_or_default());
        transactions.push(ModelTx {
            before: state,
            step: step.clone(),
            due: f.end,
        });
        state = step.next;
        processed = f.end;
    }
    let mut mid_frame = false;
    match end {
        _ if state == ModelState::Closed => {}
        RefEnd::Clean => processed = bytes.len(),
        RefEnd::Partial { .. } => {
            processed = bytes.len();
            mid_frame = true;
        }
        RefEnd::OverLimit { at, .. } => {
            let step = model_over_limit(&state);
            transactions.push(ModelTx {
                before: state,
                step: step.clone(),
                due: at + frame::HEADER_LEN,
            });
            state = step.next;
            // The header was read and answered; its payload never is.
            processed = at + frame::HEADER_LEN;
        }
    }
    ModelRun {
        transactions,
        closed_by_server: state == ModelState::Closed,
        ignored_after_close: bytes.len() - processed,
        mid_frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_split_follows_the_spec() {
        let bytes = [1, 2, 0, b'a', b'b', 4, 0xFF, 3, 1];
        let (frames, end) = reference_split(&bytes, 65535);
        let tags: Vec<u8> = frames.iter().map(|f| f.tag).collect();
        assert_eq!(tags, [1, 4, 0xFF]);
        assert_eq!(frames[0].payload, Some(&b"ab"[..]));
        assert_eq!(
            end,
            RefEnd::Partial {
                from: 7,
                total: None
            }
        );
        assert_eq!(
            reference_split(&[3, 9, 0], 8).1,
            RefEnd::OverLimit { at: 0, len: 9 }
        );
    }

    #[test]
    fn model_matches_the_happy_path() {
        let run = model_run(&crate::testkit::seeds::stream_cases()[0].bytes, None);
        assert_eq!(run.replies(), [0, 0, 0, 0]);
        assert_eq!(run.log(), b"[MyTestCase]: Hello!\r\n");
        assert!(run.closed_by_server && !run.mid_frame);
    }
}
