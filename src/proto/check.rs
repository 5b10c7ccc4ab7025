//! Invariant checks over the core, shared by the fuzz targets (`fuzz/`) and
//! the property tests (`tests/model.rs`, `tests/chunking.rs`).
//!
//! Each check takes plain data (bytes, chunk sizes, an optional payload
//! limit) and returns `Err(Broken)` naming the invariant that failed. A
//! panic inside the core propagates: the fuzzer and proptest report both.
//!
//! The checks compare the real code against two small references written
//! apart from it on purpose, straight from spec/protocol.md: a frame
//! splitter ([`reference_split`]) and the state table ([`model_step`]). A
//! bug then has to be made twice, the same way, to go unseen.

use std::fmt;

use super::frame::{self, parse_frame, parse_frame_limited, Decoder, Frame, FrameError, Parsed};
use super::machine::{Response, State, ACK, NAK};
use super::record::{decode_record, encode_record, record, records, Record, RecordError};
use super::session::{Session, Transcript};

/// An invariant that did not hold: the input that led here is a bug report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {invariant}: {detail} (a bug in msglog::proto: keep the input as a test case)")]
pub struct Broken {
    /// The invariant, as named in this module's docs.
    pub invariant: &'static str,
    /// What was seen, with enough context to start debugging.
    pub detail: String,
}

/// The result of one check.
pub type Checked = Result<(), Broken>;

fn ensure(cond: bool, invariant: &'static str, detail: impl FnOnce() -> String) -> Checked {
    if cond {
        Ok(())
    } else {
        Err(Broken {
            invariant,
            detail: detail(),
        })
    }
}

/// Shows bytes as hex, shortened: failure messages stay readable.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(64) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 64 {
            write!(f, "..({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Chunking

/// Cuts `bytes` into chunks whose sizes are `sizes`, taken in a cycle. A size
/// of 0 is an empty chunk (a read that returned nothing). No sizes, or only
/// zeros, means the rest arrives in one chunk. `[1]` is one byte at a time.
pub fn chunks<'a>(bytes: &'a [u8], sizes: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    if sizes.iter().any(|&s| s > 0) {
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(usize::from(size).min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
    } else {
        out.extend(sizes.iter().map(|_| &rest[..0]));
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The chunkings every check tries besides the caller's: all at once, and
/// one byte at a time.
const ALL_AT_ONCE: &[u16] = &[];
const BYTEWISE: &[u16] = &[1];

// ---------------------------------------------------------------------------
// Reference frame splitter

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

// ---------------------------------------------------------------------------
// frame_parser

/// What a `Decoder` produced from one chunking of a stream.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    /// (tag, payload, re-encoded bytes) of each frame.
    frames: Vec<(u8, Option<Vec<u8>>, Vec<u8>)>,
    /// Bytes still buffered at the end, or the limit error.
    end: Result<usize, FrameError>,
}

fn decoder_for(limit: Option<u16>) -> Decoder {
    match limit {
        Some(max) => Decoder::with_max_payload(usize::from(max)),
        None => Decoder::new(),
    }
}

fn decode_in_chunks(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> Result<Decoded, Broken> {
    let mut decoder = decoder_for(limit);
    let cap = decoder.capacity_limit();
    let expected_cap = frame::HEADER_LEN + limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    ensure(
        cap == expected_cap,
        "decoder capacity is one maximal frame",
        || format!("capacity_limit {cap}, expected {expected_cap} for limit {limit:?}"),
    )?;
    let bounded = |d: &Decoder| {
        ensure(
            d.buffered() <= cap && d.buffered() <= frame::MAX_FRAME_LEN,
            "decoder buffers at most one maximal frame",
            || format!("buffered {} > {cap}", d.buffered()),
        )
    };
    let mut frames = Vec::new();
    for chunk in chunks(bytes, sizes) {
        let mut rest = chunk;
        loop {
            let took = decoder.fill(rest);
            ensure(
                took <= rest.len(),
                "fill takes only what it was offered",
                || format!("took {took} of {}", rest.len()),
            )?;
            rest = &rest[took..];
            bounded(&decoder)?;
            let mut produced = 0;
            loop {
                match decoder.next_frame() {
                    Ok(Some(f)) => {
                        let wire = f.to_bytes().map_err(|e| Broken {
                            invariant: "every parsed frame re-encodes",
                            detail: e.to_string(),
                        })?;
                        ensure(
                            wire.len() == f.encoded_len(),
                            "encoded_len is the wire length",
                            || format!("{f:?}: encoded_len {} != {}", f.encoded_len(), wire.len()),
                        )?;
                        frames.push((f.tag(), f.payload().map(<[u8]>::to_vec), wire));
                        produced += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Ok(Decoded {
                            frames,
                            end: Err(e),
                        })
                    }
                }
                bounded(&decoder)?;
            }
            if rest.is_empty() {
                break;
            }
            ensure(took > 0 || produced > 0, "the decoder never stalls", || {
                format!(
                    "fill took nothing and no frame came out with {} bytes buffered",
                    decoder.buffered()
                )
            })?;
        }
    }
    ensure(
        decoder.is_at_boundary() == (decoder.buffered() == 0),
        "is_at_boundary means nothing buffered",
        || format!("buffered {}", decoder.buffered()),
    )?;
    Ok(Decoded {
        frames,
        end: Ok(decoder.buffered()),
    })
}

/// The frame parser's invariants over `bytes` fed in the chunking `sizes`
/// (see [`chunks`]), with the protocol's limit or a lower `limit`:
///
/// - it never panics (a panic propagates to the caller);
/// - the `Decoder` never buffers more than one maximal frame
///   (`frame::MAX_FRAME_LEN`, or header + `limit`) and never stalls;
/// - the frames are those of the reference splitter, identical for the
///   given chunking, all at once, and one byte at a time;
/// - every frame re-encodes to exactly the bytes it was parsed from, so the
///   re-encoded frames concatenated are the consumed input;
/// - `parse_frame` on the whole input agrees, and every strict prefix of a
///   frame is `Partial` with `needed` exact once the length is known;
/// - an over-limit length is refused at its header, with the right numbers.
pub fn frame_parser(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> Checked {
    let max = limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    let (want, want_end) = reference_split(bytes, max);
    let want_frames: Vec<_> = want
        .iter()
        .map(|f| (f.tag, f.payload.map(<[u8]>::to_vec), f.wire.to_vec()))
        .collect();
    let want_decoded = Decoded {
        frames: want_frames,
        end: match want_end {
            RefEnd::Clean => Ok(0),
            RefEnd::Partial { from, .. } => Ok(bytes.len() - from),
            RefEnd::OverLimit { len, .. } => Err(FrameError::PayloadOverLimit { len, max }),
        },
    };
    for chunking in [sizes, ALL_AT_ONCE, BYTEWISE] {
        let got = decode_in_chunks(bytes, chunking, limit)?;
        ensure(
            got == want_decoded,
            "frames are the spec's, identical for every chunking",
            || {
                format!(
                    "chunk sizes {chunking:?}, limit {limit:?}: got {} frames ending {:?}, \
                     reference {} frames ending {:?}; first difference at frame {}",
                    got.frames.len(),
                    got.end,
                    want_decoded.frames.len(),
                    want_decoded.end,
                    got.frames
                        .iter()
                        .zip(&want_decoded.frames)
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.frames.len().min(want_decoded.frames.len())),
                )
            },
        )?;
        let consumed = match want_end {
            RefEnd::Clean => bytes.len(),
            RefEnd::Partial { from, .. } => from,
            RefEnd::OverLimit { at, .. } => at,
        };
        let reencoded: Vec<u8> = got.frames.iter().flat_map(|f| f.2.clone()).collect();
        ensure(
            reencoded == bytes[..consumed],
            "re-encoded frames are the consumed input",
            || format!("{} != {}", Hex(&reencoded), Hex(&bytes[..consumed])),
        )?;
    }
    check_parse_frame(bytes, limit, &want, want_end)
}

fn check_parse_frame(
    bytes: &[u8],
    limit: Option<u16>,
    want: &[RefFrame<'_>],
    want_end: RefEnd,
) -> Checked {
    let max = limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    let parse = |input| match limit {
        Some(_) => parse_frame_limited(input, max),
        None => Ok(parse_frame(input)),
    };
    let empty = parse(&[]);
    ensure(
        empty == Ok(Parsed::Partial { needed: 1 }),
        "empty input needs one byte",
        || format!("{empty:?}"),
    )?;
    let mut at = 0;
    let mut seen = 0;
    while at < bytes.len() {
        let got = parse(&bytes[at..]);
        match (got, want.get(seen)) {
            (Ok(Parsed::Complete { frame, len }), Some(w)) => {
                ensure(
                    frame.tag() == w.tag && frame.payload() == w.payload && at + len == w.end,
                    "parse_frame finds the spec's frames",
                    || format!("at {at}: got {frame:?} of {len} bytes, reference {w:?}"),
                )?;
                // The frame minus its last byte must wait for exactly that byte.
                let short = parse(&bytes[at..at + len - 1]);
                ensure(
                    short == Ok(Parsed::Partial { needed: 1 }),
                    "every strict prefix of a frame is partial",
                    || format!("at {at}, frame of {len} bytes less one: {short:?}"),
                )?;
                at += len;
                seen += 1;
            }
            (Ok(Parsed::Partial { needed }), None) => {
                let RefEnd::Partial { from, total } = want_end else {
                    return Err(Broken {
                        invariant: "parse_frame finds the spec's frames",
                        detail: format!("at {at}: partial, reference ends {want_end:?}"),
                    });
                };
                let exact = total.unwrap_or(frame::HEADER_LEN) - (bytes.len() - from);
                return ensure(
                    from == at && needed == exact,
                    "partial says how many bytes are missing",
                    || format!("at {at}: needed {needed}, reference {want_end:?}"),
                );
            }
            (Err(FrameError::PayloadOverLimit { len, max: m }), None) => {
                return ensure(
                    want_end == RefEnd::OverLimit { at, len } && m == max,
                    "an over-limit length is refused at its header",
                    || format!("at {at}: got len {len} max {m}, reference {want_end:?}"),
                );
            }
            (got, w) => {
                return Err(Broken {
                    invariant: "parse_frame finds the spec's frames",
                    detail: format!("at {at}: got {got:?}, reference {w:?} then {want_end:?}"),
                })
            }
        }
    }
    ensure(
        seen == want.len() && want_end == RefEnd::Clean,
        "parse_frame finds the spec's frames",
        || {
            format!(
                "input ended after {seen} frames, reference {} then {want_end:?}",
                want.len()
            )
        },
    )
}

// ---------------------------------------------------------------------------
// Reference model of the state table

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
            State::Named { name } => ModelState::Named(name.to_vec()),
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
    /// frame; for an over-limit frame, its header too.
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
            processed = at;
        }
    }
    ModelRun {
        transactions,
        closed_by_server: state == ModelState::Closed,
        ignored_after_close: bytes.len() - processed,
        mid_frame,
    }
}

// ---------------------------------------------------------------------------
// session

/// Runs a real `Session` over `bytes` in the chunking `sizes`.
pub fn run_session(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> (Transcript, bool) {
    let mut session = Session::with_decoder(decoder_for(limit));
    for chunk in chunks(bytes, sizes) {
        session.feed(chunk);
    }
    session.finish()
}

/// `run_session`, checking after every chunk that the session buffers at
/// most one maximal frame.
fn run_bounded_session(
    bytes: &[u8],
    sizes: &[u16],
    limit: Option<u16>,
) -> Result<(Transcript, bool), Broken> {
    let mut session = Session::with_decoder(decoder_for(limit));
    let cap = frame::HEADER_LEN + limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    for chunk in chunks(bytes, sizes) {
        session.feed(chunk);
        ensure(
            session.buffered() <= cap,
            "a session buffers at most one maximal frame",
            || {
                format!(
                    "buffered {} > {cap}, chunk sizes {sizes:?}",
                    session.buffered()
                )
            },
        )?;
    }
    Ok(session.finish())
}

fn rule_of(response: &Response) -> Option<&'static str> {
    match response {
        Response::Reject(v) => Some(v.rule()),
        Response::Ack | Response::Silent => None,
    }
}

/// The session's invariants over `bytes` fed in the chunking `sizes`, with
/// a decoder limited to `limit` payload bytes if given:
///
/// - replies are only 0x00 and 0xFF, exactly one per completed transaction,
///   due as soon as the transaction's last byte arrived;
/// - no append before a successful PASS: a record is written only by a MSG
///   in state P, and it is the record of that MSG under the PASSed name;
/// - nothing is processed after a 0xFF or a CLOSE;
/// - the state moves only along the spec's table ([`model_step`]), with the
///   rule the table names for each rejection;
/// - the transcript (replies, rules, log, close, ignored bytes, end of
///   stream mid-frame) is identical for every chunking and is the model's;
/// - the session buffers at most one maximal frame;
/// - every record written holds the [`record_pairs`] invariants (one line,
///   decodes back) and the log reads back as the appended messages.
pub fn session(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> Checked {
    let model = model_run(bytes, limit);
    check_bytewise(bytes, limit, &model)?;
    let (want, want_mid) = run_session(bytes, BYTEWISE, limit);
    for chunking in [sizes, ALL_AT_ONCE] {
        let (got, mid) = run_bounded_session(bytes, chunking, limit)?;
        ensure(
            got == want && mid == want_mid,
            "the transcript is the same for every chunking",
            || {
                format!(
                    "chunk sizes {chunking:?}: {got:?} mid_frame {mid}; \
                     one byte at a time: {want:?} mid_frame {want_mid}"
                )
            },
        )?;
    }
    ensure(
        want.replies == model.replies()
            && want.log == model.log()
            && want.closed_by_server == model.closed_by_server
            && want.ignored_after_close == model.ignored_after_close
            && want_mid == model.mid_frame,
        "the session ends as the model does",
        || format!("real {want:?} mid_frame {want_mid}; model {model:?}"),
    )?;
    // The records the session wrote are records: one line each, and so on.
    let appended = model.appended();
    let pairs: Vec<(&[u8], &[u8])> = appended.iter().map(|(n, m)| (&n[..], &m[..])).collect();
    record_pairs(&pairs)?;
    let decoded: Result<Vec<_>, _> = records(&want.log)
        .map(|r| r.map(|Record { name, message }| (name, message)))
        .collect();
    ensure(
        decoded.as_ref() == Ok(&model.appended()),
        "the log reads back as the appended messages",
        || format!("{decoded:?}"),
    )
}

/// Feeds one byte at a time, so at most one transaction completes per byte,
/// and checks each transaction as it happens.
fn check_bytewise(bytes: &[u8], limit: Option<u16>, model: &ModelRun) -> Checked {
    let mut session = Session::with_decoder(decoder_for(limit));
    let mut expected = model.transactions.iter().peekable();
    for (i, byte) in bytes.iter().enumerate() {
        let before = ModelState::of(session.state());
        let (replies, responses, log) = {
            let t = session.transcript();
            (t.replies.len(), t.responses.len(), t.log.len())
        };
        session.feed(std::slice::from_ref(byte));
        let t = session.transcript();
        let after = ModelState::of(session.state());
        let new_replies = &t.replies[replies..];
        let new_responses = &t.responses[responses..];
        let appended = &t.log[log..];
        let at = i + 1;
        ensure(
            new_replies.iter().all(|&b| b == ACK || b == NAK),
            "replies are only 0x00 and 0xFF",
            || format!("after byte {at}: replies {}", Hex(new_replies)),
        )?;
        ensure(
            before != ModelState::Closed
                || (new_responses.is_empty() && appended.is_empty() && after == before),
            "nothing is processed after 0xFF or CLOSE",
            || {
                format!(
                    "after byte {at}: {new_responses:?}, {} logged",
                    appended.len()
                )
            },
        )?;
        ensure(
            appended.is_empty() || matches!(before, ModelState::Authenticated(_)),
            "no append before a successful PASS",
            || {
                format!(
                    "after byte {at}, in state {}: {}",
                    before.label(),
                    Hex(appended)
                )
            },
        )?;
        let due = expected.next_if(|tx| tx.due == at);
        let Some(tx) = due else {
            ensure(
                new_responses.is_empty() && appended.is_empty() && after == before,
                "only a completed transaction changes anything",
                || {
                    format!(
                        "after byte {at}: {} -> {}, {new_responses:?}, {} logged",
                        before.label(),
                        after.label(),
                        appended.len()
                    )
                },
            )?;
            continue;
        };
        let want_log = tx
            .step
            .append
            .as_ref()
            .map_or_else(Vec::new, |(n, m)| record(n, m));
        let replies_ok = new_replies == tx.step.reply.as_slice()
            && new_responses.len() == 1
            && new_responses[0].byte() == tx.step.reply
            && rule_of(&new_responses[0]) == tx.step.rule;
        ensure(
            replies_ok,
            "exactly one reply per completed transaction, with the table's rule",
            || {
                format!(
                    "after byte {at}, state {}: got {new_responses:?}, table says {:?}",
                    before.label(),
                    tx.step
                )
            },
        )?;
        ensure(
            before == tx.before && after == tx.step.next && appended == want_log,
            "the state moves only along the spec's table",
            || {
                format!(
                    "after byte {at}: {} -> {} logging {}; table: {} -> {} logging {}",
                    before.label(),
                    after.label(),
                    Hex(appended),
                    tx.before.label(),
                    tx.step.next.label(),
                    Hex(&want_log)
                )
            },
        )?;
    }
    ensure(
        expected.peek().is_none(),
        "exactly one reply per completed transaction, with the table's rule",
        || {
            format!(
                "transactions never answered: {:?}",
                expected.collect::<Vec<_>>()
            )
        },
    )
}

// ---------------------------------------------------------------------------
// record_codec

/// Characters that must never appear raw in a record body: they end lines,
/// or hide or reorder text, for some reader.
fn forbidden_in_record(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{61C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// The record codec's invariants over `bytes` cut into pieces of the
/// lengths `cuts` (the rest is the last piece): consecutive pieces are
/// (name, message) pairs for [`record_pairs`], and every piece, and the
/// whole input, is a line for [`record_line`].
pub fn record_codec(bytes: &[u8], cuts: &[u16]) -> Checked {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut rest = bytes;
    for &cut in cuts {
        let (piece, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    let pairs: Vec<(&[u8], &[u8])> = pieces
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or_default()))
        .collect();
    record_pairs(&pairs)?;
    for piece in pieces {
        record_line(piece)?;
    }
    record_line(bytes)
}

/// Encoding invariants, for each (name, message) of `pairs`:
///
/// - decode(encode(name, message)) == (name, message);
/// - a record is valid UTF-8 and exactly one line: CR LF at the end and no
///   CR, LF or other line break or control character before it;
/// - the name ends at the first `]: `;
/// - no record can be read as two (`records` finds exactly one);
/// - printable ASCII and readable UTF-8 pass unchanged (`]` in names
///   aside);
/// - records concatenated into a log split back into the pairs.
pub fn record_pairs(pairs: &[(&[u8], &[u8])]) -> Checked {
    let mut log = Vec::new();
    for &(name, message) in pairs {
        let r = record(name, message);
        let mut appended = Vec::new();
        encode_record(&mut appended, name, message);
        ensure(appended == r, "encode_record and record agree", || {
            format!("{} vs {}", Hex(&appended), Hex(&r))
        })?;
        let text = std::str::from_utf8(&r).map_err(|e| Broken {
            invariant: "a record is valid UTF-8",
            detail: format!("{e}: {}", Hex(&r)),
        })?;
        let body = text.strip_suffix("\r\n").ok_or_else(|| Broken {
            invariant: "a record ends with CR LF",
            detail: Hex(&r).to_string(),
        })?;
        ensure(
            !body.chars().any(forbidden_in_record),
            "a record is one line: no line break or control character inside",
            || format!("{body:?}"),
        )?;
        let escaped_name = body
            .strip_prefix('[')
            .and_then(|b| b.split_once("]: "))
            .map(|(n, _)| n);
        ensure(
            escaped_name.is_some_and(|n| !n.contains(']')),
            "the name ends at the first `]: `",
            || format!("{body:?}"),
        )?;
        let back = decode_record(&r);
        // A server writes no empty name or message: the decoder refuses them.
        let want = if name.is_empty() {
            Err(RecordError::EmptyName)
        } else if message.is_empty() {
            Err(RecordError::EmptyMessage)
        } else {
            Ok(Record {
                name: name.to_vec(),
                message: message.to_vec(),
            })
        };
        ensure(
            back == want,
            "decode(encode(name, message)) == (name, message), and empty ones are refused",
            || format!("{back:?} from {}", Hex(&r)),
        )?;
        ensure(
            records(&r).count() == 1,
            "no record can be read as two",
            || format!("{body:?}"),
        )?;
        // Readable text stays readable: UTF-8 with nothing to escape is
        // copied as it is.
        let readable = |bytes: &[u8], name: bool| {
            std::str::from_utf8(bytes).is_ok_and(|t| {
                !t.chars().any(|c| {
                    forbidden_in_record(c)
                        || ('\u{2400}'..='\u{2426}').contains(&c)
                        || name && c == ']'
                })
            })
        };
        if readable(name, true) && readable(message, false) {
            let plain = [b"[", name, b"]: ", message, b"\r\n"].concat();
            ensure(r == plain, "readable UTF-8 passes unchanged", || {
                format!("{body:?}")
            })?;
        }
        let printable = |b: &u8| (0x20..0x7F).contains(b);
        if name.iter().all(|b| printable(b) && *b != b']') && message.iter().all(printable) {
            let plain = [b"[", name, b"]: ", message, b"\r\n"].concat();
            ensure(r == plain, "printable ASCII passes unchanged", || {
                format!("{body:?}")
            })?;
        }
        log.extend_from_slice(&r);
    }
    let back: Vec<_> = records(&log)
        .map(|r| r.map(|Record { name, message }| (name, message)))
        .collect();
    let want: Vec<_> = pairs
        .iter()
        .map(|&(n, m)| match (n.is_empty(), m.is_empty()) {
            (true, _) => Err(RecordError::EmptyName),
            (_, true) => Err(RecordError::EmptyMessage),
            _ => Ok((n.to_vec(), m.to_vec())),
        })
        .collect();
    ensure(back == want, "concatenated records split back", || {
        format!("{} records read back, {} written", back.len(), want.len())
    })?;
    Ok(())
}

/// Decoding invariants for an arbitrary `line`: decoding never panics; a
/// line that decodes is the canonical encoding of what it decodes to (a
/// record has one reading only); every record `records` finds in it
/// re-encodes to one record.
pub fn record_line(line: &[u8]) -> Checked {
    if let Ok(rec) = decode_record(line) {
        let again = record(&rec.name, &rec.message);
        ensure(
            again == line,
            "a decodable line is the canonical encoding of its record",
            || {
                format!(
                    "{} decodes to {rec:?}, which encodes to {}",
                    Hex(line),
                    Hex(&again)
                )
            },
        )?;
    }
    for (i, r) in records(line).enumerate() {
        if let Ok(rec) = r {
            ensure(
                records(&record(&rec.name, &rec.message)).count() == 1,
                "no record can be read as two",
                || format!("record {i} of {}", Hex(line)),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Seeds for the fuzz corpus

/// The fuzz input of `frame_parser` and `session`, in the byte layout the
/// `arbitrary` crate (1.x) derives for
/// `struct { sizes: Vec<u16>, limit: Option<u16>, bytes: &[u8] }`:
/// each vector element and `Some` is introduced by an odd byte and a
/// vector ends with an even one; integers are little-endian; the last field
/// takes the rest.
pub fn stream_input(sizes: &[u16], limit: Option<u16>, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 3 * sizes.len() + 4);
    for size in sizes {
        out.push(1);
        out.extend_from_slice(&size.to_le_bytes());
    }
    out.push(0);
    match limit {
        Some(max) => {
            out.push(1);
            out.extend_from_slice(&max.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(bytes);
    out
}

/// The fuzz input of `record_codec` for
/// `struct { cuts: Vec<u16>, bytes: &[u8] }` (layout as at
/// [`stream_input`]) that [`record_codec`] cuts back into `pairs` and `line`.
pub fn record_input(pairs: &[(&[u8], &[u8])], line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    for piece in pairs.iter().flat_map(|&(n, m)| [n, m]) {
        let len = u16::try_from(piece.len()).expect("seed pieces are short");
        out.push(1);
        out.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(piece);
    }
    out.push(0);
    out.extend_from_slice(&bytes);
    out.extend_from_slice(line);
    out
}

/// One seed file of the fuzz corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `frame_parser`, `session` or `record_codec`.
    pub target: &'static str,
    /// File name (in `fuzz/corpus/<target>/`).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A seed for `frame_parser` and `session`, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCase {
    pub name: String,
    pub sizes: Vec<u16>,
    pub limit: Option<u16>,
    pub bytes: Vec<u8>,
}

/// A seed for `record_codec`, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCase {
    pub name: String,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    pub line: Vec<u8>,
}

fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        // Every payload below is short; a too-long one is a bug here.
        f.encode(&mut out).expect("seed payloads fit a frame");
    }
    out
}

/// Client streams worth starting from: the original client's behaviours, a
/// row of each kind of the state table, pipelining, fragmentation, limits.
pub fn stream_cases() -> Vec<StreamCase> {
    use Frame::*;
    let login = |rest: &[Frame<'_>]| {
        let mut frames = vec![Name(b"MyTestCase"), Pass(b"A")];
        frames.extend_from_slice(rest);
        wire(&frames)
    };
    let cut = |mut stream: Vec<u8>, tail: &[u8]| {
        stream.extend_from_slice(tail);
        stream
    };
    let plain: Vec<(&str, Vec<u8>)> = vec![
        ("hello", login(&[Msg(b"Hello!"), Close])),
        ("two-messages", login(&[Msg(b"one"), Msg(b"two"), Close])),
        ("no-close", login(&[Msg(b"Hello!")])),
        ("close-first", wire(&[Close, Name(b"never")])),
        ("close-named", wire(&[Name(b"u"), Close])),
        ("password-b", wire(&[Name(b"u"), Pass(b"B"), Msg(b"never")])),
        ("password-baaa", wire(&[Name(b"u"), Pass(b"BAAA")])),
        ("empty-name", wire(&[Name(b"")])),
        ("nul-name", wire(&[Name(b"\0root")])),
        (
            "nul-inside-name",
            wire(&[Name(b"Al\0ice"), Pass(b"A"), Msg(b"hi")]),
        ),
        ("empty-pass", wire(&[Name(b"u"), Pass(b"")])),
        ("empty-msg", login(&[Msg(b"")])),
        ("msg-first", wire(&[Msg(b"Hello!")])),
        ("pass-first", wire(&[Pass(b"A")])),
        ("name-twice", wire(&[Name(b"u"), Name(b"v")])),
        ("msg-named", wire(&[Name(b"u"), Msg(b"early")])),
        ("pass-twice", login(&[Pass(b"A")])),
        ("unknown-0", wire(&[Unknown(0)])),
        ("unknown-5", wire(&[Name(b"u"), Unknown(5)])),
        ("unknown-ff", login(&[Unknown(0xFF)])),
        (
            "forged-record",
            login(&[Msg(b"hi\r\n[admin]: transfer\x00\x7f"), Close]),
        ),
        (
            "bracket-name",
            wire(&[Name(b"admin]: x"), Pass(b"A"), Msg(b"y")]),
        ),
        (
            "binary-msg",
            login(&[Msg(&[
                0xFF, 0xC3, 0x28, 0xE2, 0x82, 0x00, 0xF0, 0x9F, 0x98, 0x80,
            ])]),
        ),
        (
            "utf8-msg",
            login(&[Msg("héllo ✓ \u{2028}\u{202E}␦␍".as_bytes())]),
        ),
        ("bytes-after-close", login(&[Close, Msg(b"late")])),
        ("mid-frame-end", cut(login(&[]), &[3, 5, 0, b'h', b'e'])),
        ("mid-header-end", cut(login(&[]), &[3, 5])),
        ("long-msg", login(&[Msg(&[b'x'; 300]), Close])),
    ];
    let hello = plain[0].1.clone();
    let mut cases: Vec<StreamCase> = plain
        .into_iter()
        .map(|(name, bytes)| StreamCase {
            name: name.to_string(),
            sizes: Vec::new(),
            limit: None,
            bytes,
        })
        .collect();
    // Chunkings and limits on one stream: the fuzzer mutates them from here.
    for (name, sizes, limit) in [
        ("bytewise", &[1u16][..], None),
        ("split-header", &[1, 2, 7][..], None),
        ("limit-4", &[][..], Some(4)),
        ("limit-0", &[3][..], Some(0)),
    ] {
        cases.push(StreamCase {
            name: format!("hello-{name}"),
            sizes: sizes.to_vec(),
            limit,
            bytes: hello.clone(),
        });
    }
    cases
}

/// Names, messages and lines worth starting from for `record_codec`.
pub fn record_cases() -> Vec<RecordCase> {
    let case = |name: &str, pairs: &[(&[u8], &[u8])], line: &[u8]| RecordCase {
        name: name.to_string(),
        pairs: pairs
            .iter()
            .map(|(n, m)| (n.to_vec(), m.to_vec()))
            .collect(),
        line: line.to_vec(),
    };
    vec![
        case(
            "plain",
            &[(b"MyTestCase", b"Hello!")],
            b"[MyTestCase]: Hello!\r\n",
        ),
        case(
            "forged",
            &[(b"mallory", b"hi\r\n[admin]: transfer\x00\x7f")],
            "[mallory]: hi␍␊[admin]: transfer␀␡\r\n".as_bytes(),
        ),
        case(
            "bracket-name",
            &[(b"admin]: x", b"y")],
            "[admin␦5D: x]: y\r\n".as_bytes(),
        ),
        case(
            "binary",
            &[(
                b"u",
                &[0xFF, 0xC3, 0x28, 0xE2, 0x82, 0x00, 0xF0, 0x9F, 0x98, 0x80],
            )],
            "[u]: ␦FF␦C3(␦E2␦82␀😀\r\n".as_bytes(),
        ),
        case(
            "unicode",
            &[(
                b"u",
                "héllo ✓ 日本 \u{2028}\u{202E}\u{FEFF}␦␍\u{85}".as_bytes(),
            )],
            "[u]: ␦41\r\n".as_bytes(),
        ),
        case(
            "several",
            &[(b"a", b"one"), (b"b\0", b"\r"), (b"", b"")],
            b"[a]: one\r\n[a]: tw",
        ),
        case("bad-lines", &[], "[a]: ␦4\r\n[a] b\r\n\t\r\n".as_bytes()),
    ]
}

/// The committed seed corpus: [`stream_cases`] and [`record_cases`], plus
/// cases read elsewhere (spec/vectors).
pub fn seeds(extra_streams: &[StreamCase], extra_records: &[RecordCase]) -> Vec<Seed> {
    let mut out = Vec::new();
    for case in stream_cases().iter().chain(extra_streams) {
        for target in ["frame_parser", "session"] {
            out.push(Seed {
                target,
                name: format!("seed-{}", case.name),
                bytes: stream_input(&case.sizes, case.limit, &case.bytes),
            });
        }
    }
    for case in record_cases().iter().chain(extra_records) {
        let pairs: Vec<(&[u8], &[u8])> = case.pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
        out.push(Seed {
            target: "record_codec",
            name: format!("seed-{}", case.name),
            bytes: record_input(&pairs, &case.line),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let bytes: Vec<u8> = (0..10).collect();
        assert_eq!(chunks(&bytes, &[]), vec![&bytes[..]]);
        let none: &[u8] = &[];
        assert_eq!(chunks(&bytes, &[0, 0]), vec![none, none, &bytes[..]]);
        assert_eq!(
            chunks(&bytes, &[4]),
            vec![&bytes[..4], &bytes[4..8], &bytes[8..]]
        );
        assert_eq!(chunks(&bytes, &[1]).len(), 10);
        let mixed = chunks(&bytes, &[0, 3]);
        assert_eq!(mixed.concat(), bytes);
        assert_eq!(mixed[0], none);
    }

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
    fn every_seed_passes_every_check() {
        for case in stream_cases() {
            frame_parser(&case.bytes, &case.sizes, case.limit).unwrap();
            session(&case.bytes, &case.sizes, case.limit).unwrap();
            session(&case.bytes, &[5, 0, 1], Some(3)).unwrap();
        }
        for case in record_cases() {
            let pairs: Vec<(&[u8], &[u8])> =
                case.pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
            record_pairs(&pairs).unwrap();
            record_line(&case.line).unwrap();
        }
    }

    #[test]
    fn model_matches_the_happy_path() {
        let run = model_run(&stream_cases()[0].bytes, None);
        assert_eq!(run.replies(), [0, 0, 0, 0]);
        assert_eq!(run.log(), b"[MyTestCase]: Hello!\r\n");
        assert!(run.closed_by_server && !run.mid_frame);
    }

    /// The seed files on disk are what this code generates: regenerate them
    /// with `cargo test --lib -- --ignored regenerate_fuzz_corpus`.
    #[test]
    fn committed_seeds_are_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for seed in seeds(&[], &[]) {
            let path = root.join(seed.target).join(&seed.name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == seed.bytes,
                "{} is missing or stale: run `cargo test --lib -- --ignored regenerate_fuzz_corpus`",
                path.display()
            );
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len() % 2 == 0, "odd-length hex {s:?}");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn vectors(file: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("spec/vectors")
            .join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// One session vector of spec/vectors (see spec/README.md).
    struct SessionVector {
        case: StreamCase,
        replies: Vec<u8>,
        log: Vec<u8>,
        closed_by_server: bool,
        mid_frame: bool,
        rule: Option<String>,
    }

    fn session_vectors() -> Vec<SessionVector> {
        let mut out = Vec::new();
        for file in ["sessions.json", "sessions-large.json"] {
            let doc = vectors(file);
            for v in doc["vectors"].as_array().expect("vectors array") {
                let text = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"));
                out.push(SessionVector {
                    case: StreamCase {
                        name: format!("vector-{}", text("id")),
                        sizes: Vec::new(),
                        limit: v["max_payload"]
                            .as_u64()
                            .map(|m| u16::try_from(m).expect("limit fits u16")),
                        bytes: hex(text("client")),
                    },
                    replies: hex(text("replies")),
                    log: v["log"]
                        .as_array()
                        .expect("log array")
                        .iter()
                        .flat_map(|r| r.as_str().expect("record").bytes())
                        .collect(),
                    closed_by_server: text("closed_by") == "server",
                    mid_frame: v["mid_frame"].as_bool().expect("mid_frame"),
                    rule: v["rule"].as_str().map(str::to_string),
                });
            }
        }
        out
    }

    /// Record vectors as record cases: each valid record with its own
    /// line, each invalid line alone.
    fn record_vectors() -> Vec<RecordCase> {
        let doc = vectors("records.json");
        let mut out = Vec::new();
        for r in doc["records"].as_array().expect("records array") {
            let text = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("{k} in {r}"));
            out.push(RecordCase {
                name: format!("vector-{}", text("id")),
                pairs: vec![(hex(text("name_hex")), hex(text("message_hex")))],
                line: text("record").as_bytes().to_vec(),
            });
        }
        for r in doc["invalid"].as_array().expect("invalid array") {
            let text = |k: &str| r[k].as_str().unwrap_or_else(|| panic!("{k} in {r}"));
            out.push(RecordCase {
                name: format!("vector-invalid-{}", text("id")),
                pairs: Vec::new(),
                line: hex(text("line_hex")),
            });
        }
        out
    }

    /// The model is checked against the spec's vectors, and every vector
    /// holds the fuzz targets' invariants.
    #[test]
    fn model_and_checks_agree_with_every_vector() {
        let all = session_vectors();
        assert!(all.len() >= 40, "only {} session vectors", all.len());
        for v in &all {
            let c = &v.case;
            let run = model_run(&c.bytes, c.limit);
            let rule = run
                .transactions
                .iter()
                .find_map(|t| t.step.rule)
                .map(str::to_string);
            assert_eq!(
                (
                    run.replies(),
                    run.log(),
                    run.closed_by_server,
                    run.mid_frame,
                    rule
                ),
                (
                    v.replies.clone(),
                    v.log.clone(),
                    v.closed_by_server,
                    v.mid_frame,
                    v.rule.clone()
                ),
                "{}",
                c.name
            );
            session(&c.bytes, &[7, 1], c.limit).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            frame_parser(&c.bytes, &[7, 1], c.limit).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        for case in record_vectors() {
            let pairs: Vec<(&[u8], &[u8])> =
                case.pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
            record_pairs(&pairs).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            record_line(&case.line).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            match pairs.first() {
                Some(&(n, m)) => assert_eq!(record(n, m), case.line, "{}", case.name),
                None => assert!(decode_record(&case.line).is_err(), "{}", case.name),
            }
        }
    }

    /// Rewrites fuzz/corpus/*/seed-* from this module's cases and
    /// spec/vectors: `cargo test --lib -- --ignored regenerate_fuzz_corpus`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand after changing the seeds or spec/vectors"]
    fn regenerate_fuzz_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        // Vectors of a few kilobytes at most: a large seed would raise
        // libFuzzer's input size limit for every run.
        let streams: Vec<StreamCase> = session_vectors()
            .into_iter()
            .map(|v| v.case)
            .filter(|c| c.bytes.len() <= 4096)
            .collect();
        let all = seeds(&streams, &record_vectors());
        for target in ["frame_parser", "session", "record_codec"] {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("seed-")
                {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        for seed in &all {
            std::fs::write(root.join(seed.target).join(&seed.name), &seed.bytes).unwrap();
        }
        println!("wrote {} seeds under {}", all.len(), root.display());
    }
}
