//! Judging one client connection against spec/protocol.md#client-requirements,
//! from its byte transcript alone: no IO, no clock (times come in as data).
//!
//! The walk follows what the client meant: frame by frame through the core's
//! parser, in the state the client believes it is in (a frame the server
//! rejected for its payload or by a scenario still moves the client on). A
//! length field that falls short shows up as a "tag" that is not a tag; then
//! the walk looks for the classic length bugs (characters instead of bytes,
//! UTF-16 units, big-endian, a wrapped u16) and, when one explains the bytes,
//! blames the length and carries on from the frame boundary the client meant.

use crate::proto::frame::{parse_frame, Frame, Parsed, HEADER_LEN, TAG_MSG, TAG_NAME, TAG_PASS};
use crate::proto::Violation;

use super::report::{hex, Failure, Tally};
use super::rules::{
    CLIENT_ORDER, CLIENT_TAG, CLOSE_NOT_ONE_BYTE, LENGTH_NOT_BYTES, PAYLOAD_TOO_LONG,
    SENT_AFTER_REJECT,
};

/// A client that stops sending in the middle of a frame for this long, with
/// its connection still open, is waiting for a reply its length field
/// promised more bytes for.
pub const STALL_MS: u64 = 1000;

/// Why the checking server sent a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyCause {
    /// 0x00: the frame was accepted.
    Accepted,
    /// 0xFF: the frame broke a rule of the state table.
    Rule(Violation),
    /// 0xFF: a fault scenario rejected a frame the server would have accepted.
    Scenario(&'static str),
}

/// One reply byte the checking server wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerReply {
    pub byte: u8,
    /// The frame it answers, 1-based in the server's parse.
    pub frame: usize,
    pub cause: ReplyCause,
}

/// How the checking server ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEndKind {
    /// After a 0xFF.
    Rejected,
    /// After confirming a CLOSE.
    Closed,
    /// Closed mid-session without a reply (scenario `close-mid-session`).
    Dropped,
}

/// The server's end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerEnd {
    pub kind: ServerEndKind,
    /// Client bytes received when the closing reply (or the close) was sent:
    /// anything after this offset the client sent with the reply in hand.
    pub received_before: usize,
}

/// Everything the checking server saw on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTranscript {
    /// Connection number, 1-based in accept order.
    pub id: usize,
    /// Every client byte, in order (up to the recording cap).
    pub received: Vec<u8>,
    /// Reply bytes in the order they were written.
    pub replies: Vec<CheckerReply>,
    pub server_end: Option<ServerEnd>,
    /// The client ended its stream (end of file) before the run ended.
    pub client_eof: bool,
    /// Milliseconds from accept to the last client byte, and to the end of
    /// the connection (client end of stream or end of the run).
    pub last_byte_ms: u64,
    pub end_ms: u64,
    /// Bytes received beyond the recording cap, counted but not kept.
    pub not_recorded: usize,
}

/// What the client believes its state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intended {
    Connected,
    Named,
    Authenticated,
}

impl Intended {
    fn expects(self) -> (u8, &'static str) {
        match self {
            Intended::Connected => (TAG_NAME, "NAME"),
            Intended::Named => (TAG_PASS, "PASS"),
            Intended::Authenticated => (TAG_MSG, "MSG"),
        }
    }
    fn label(self) -> &'static str {
        match self {
            Intended::Connected => "C",
            Intended::Named => "N",
            Intended::Authenticated => "P",
        }
    }
}

/// A length bug that explains where the client meant a frame to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthBug {
    /// The length counts characters (Unicode scalar values) of UTF-8 text.
    Characters,
    /// The length counts UTF-16 code units (JavaScript's `length`).
    Utf16Units,
    /// The length field is big-endian.
    BigEndian,
    /// The payload is over 65535 bytes and its length wrapped around.
    Wrapped,
}

/// The payload length the client meant, and the bug that explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnosis {
    pub bug: LengthBug,
    pub meant: usize,
}

fn is_tag(b: u8) -> bool {
    (1..=4).contains(&b)
}

/// A boundary the client could have meant: the end of what it sent, or a
/// known tag.
fn boundary_ok(data: &[u8], at: usize) -> bool {
    at == data.len() || data.get(at).copied().is_some_and(is_tag)
}

/// Byte length of the first `n` characters of UTF-8 text at `data`, counting
/// each character as `units(c)`; `None` if the text is not valid UTF-8 there
/// or the count does not land exactly on `n`.
fn text_prefix_len(data: &[u8], n: usize, units: fn(char) -> usize) -> Option<usize> {
    let mut counted = 0;
    let mut pos = 0;
    while counted < n {
        let rest = data.get(pos..)?;
        let head = &rest[..rest.len().min(4)];
        let c = match std::str::from_utf8(head) {
            Ok(s) => s.chars().next()?,
            Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&head[..e.valid_up_to()])
                .ok()?
                .chars()
                .next()?,
            Err(_) => return None,
        };
        counted += units(c);
        pos += c.len_utf8();
    }
    (counted == n).then_some(pos)
}

/// Looks for the length bug that explains a frame whose declared length
/// `declared` fell short: the bytes the client meant as the payload start at
/// `payload_start`, and the frame it meant to send next must start at a tag
/// (or at the end of what it sent).
pub fn diagnose_short(
    data: &[u8],
    header: [u8; 2],
    payload_start: usize,
    declared: usize,
) -> Option<Diagnosis> {
    let text = &data[payload_start.min(data.len())..];
    let mut candidates = Vec::new();
    if let Some(b) = text_prefix_len(text, declared, |_| 1) {
        candidates.push((LengthBug::Characters, b));
    }
    if let Some(b) = text_prefix_len(text, declared, char::len_utf16) {
        candidates.push((LengthBug::Utf16Units, b));
    }
    candidates.push((
        LengthBug::BigEndian,
        usize::from(u16::from_be_bytes(header)),
    ));
    let mut wrapped = declared + 0x1_0000;
    while wrapped <= text.len() {
        candidates.push((LengthBug::Wrapped, wrapped));
        wrapped += 0x1_0000;
    }
    candidates
        .into_iter()
        .filter(|&(_, meant)| meant > declared && payload_start + meant <= data.len())
        .filter(|&(_, meant)| boundary_ok(data, payload_start + meant))
        .min_by_key(|&(_, meant)| meant)
        .map(|(bug, meant)| Diagnosis { bug, meant })
}

/// Looks for the length bug of a frame whose declared length is more than the
/// client sent: only a big-endian length can be longer than meant.
pub fn diagnose_long(data: &[u8], header: [u8; 2], payload_start: usize) -> Option<Diagnosis> {
    let meant = usize::from(u16::from_be_bytes(header));
    let declared = usize::from(u16::from_le_bytes(header));
    (meant < declared
        && payload_start + meant <= data.len()
        && boundary_ok(data, payload_start + meant))
    .then_some(Diagnosis {
        bug: LengthBug::BigEndian,
        meant,
    })
}

fn describe(d: Diagnosis, declared: usize) -> String {
    let why = match d.bug {
        LengthBug::Characters => "the length counts characters, not encoded bytes",
        LengthBug::Utf16Units => "the length counts UTF-16 code units, not encoded bytes",
        LengthBug::BigEndian => "the length field is big-endian; it must be little-endian",
        LengthBug::Wrapped => "the payload is over 65535 bytes and its length field wrapped around",
    };
    format!(
        "length field says {declared} bytes but the client sent {} payload bytes: {why}",
        d.meant
    )
}

/// What judging one connection found besides the rule checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionVerdict {
    /// Frames the client sent, as it meant them.
    pub frames: usize,
    /// Payloads of the MSG frames, as the client meant them, in order.
    pub messages: Vec<Vec<u8>>,
    /// Client bytes after the server's end (after 0xFF, CLOSE or a drop).
    pub after_end: usize,
    /// A length bug put client and server out of step.
    pub desynchronised: bool,
    /// One line about the connection for the report.
    pub summary: String,
}

/// Judges one connection, adding its checks and failures to `tally`.
pub fn judge_connection(t: &ClientTranscript, tally: &mut Tally) -> ConnectionVerdict {
    let data = &t.received;
    let limit = t
        .server_end
        .map_or(data.len(), |e| e.received_before.min(data.len()));
    let fail = |frame: Option<usize>, bytes: &[u8], detail: String| blame(t, frame, bytes, detail);
    let mut v = ConnectionVerdict::default();
    let mut state = Intended::Connected;
    let mut pos = 0;
    // The last payload frame, (start, number), until the next tag confirms
    // its length.
    let mut pending: Option<(usize, usize)> = None;
    let mut kinds: Vec<&'static str> = Vec::new();
    let mut closed_at = None;

    while pos < data.len() && (pos < limit || v.desynchronised) {
        let (frame, len) = match parse_frame(&data[pos..]) {
            Parsed::Complete { frame, len } => (frame, len),
            Parsed::Partial { .. } => {
                confirm_length(&mut pending, tally);
                judge_partial(t, pos, &mut v, tally);
                break;
            }
        };
        let number = v.frames + 1;
        let bad_tag = match frame {
            Frame::Unknown(_) => true,
            Frame::Close => false,
            f => f.tag() != state.expects().0,
        };
        if !bad_tag {
            confirm_length(&mut pending, tally);
        } else if let Some((start, prev_number)) = pending.take() {
            // A tag the client cannot have meant: see whether the previous
            // frame's length explains it.
            let header = [data[start + 1], data[start + 2]];
            let declared = usize::from(u16::from_le_bytes(header));
            if let Some(d) = diagnose_short(data, header, start + HEADER_LEN, declared) {
                let (failed, held) = if d.bug == LengthBug::Wrapped {
                    (PAYLOAD_TOO_LONG, LENGTH_NOT_BYTES)
                } else {
                    (LENGTH_NOT_BYTES, PAYLOAD_TOO_LONG)
                };
                let end = start + HEADER_LEN + d.meant;
                tally.pass(held);
                tally.fail(
                    failed,
                    fail(Some(prev_number), &data[start..end], describe(d, declared)),
                );
                if data[start] == TAG_MSG {
                    if let Some(last) = v.messages.last_mut() {
                        *last = data[start + HEADER_LEN..end].to_vec();
                    }
                }
                v.desynchronised = true;
                // The frame just parsed was a misreading; go on from the
                // boundary the client meant.
                pos = end;
                continue;
            }
            confirm_length(&mut Some((start, prev_number)), tally);
        }
        v.frames = number;
        if bad_tag {
            kinds.push(match frame {
                Frame::Unknown(_) => "unknown tag",
                f => frame_kind(&f),
            });
            match frame {
                Frame::Unknown(tag) => tally.fail(
                    CLIENT_TAG,
                    fail(
                        Some(number),
                        &data[pos..(pos + 8).min(data.len())],
                        format!(
                            "tag 0x{tag:02x} is not a tag (1 NAME, 2 PASS, 3 MSG, 4 CLOSE); in state {} the client must send {}",
                            state.label(),
                            state.expects().1
                        ),
                    ),
                ),
                f => {
                    tally.pass(CLIENT_TAG);
                    tally.fail(
                        CLIENT_ORDER,
                        fail(
                            Some(number),
                            &data[pos..pos + len],
                            format!(
                                "{} sent in state {}, where the client must send {}",
                                frame_kind(&f),
                                state.label(),
                                state.expects().1
                            ),
                        ),
                    );
                }
            }
            // The server closed here; what the client meant next is unknowable.
            break;
        }

        kinds.push(frame_kind(&frame));
        tally.pass(CLIENT_TAG);
        match frame {
            Frame::Close => {
                closed_at = Some(pos);
                judge_close(t, pos, number, tally);
                break;
            }
            Frame::Name(_) | Frame::Pass(_) | Frame::Msg(_) => {
                tally.pass(CLIENT_ORDER);
                if let Frame::Msg(p) = frame {
                    v.messages.push(p.to_vec());
                }
                pending = Some((pos, number));
                state = match state {
                    Intended::Connected => Intended::Named,
                    _ => Intended::Authenticated,
                };
            }
            Frame::Unknown(_) => unreachable!("an unknown tag is a bad tag"),
        }
        pos += len;
    }
    confirm_length(&mut pending, tally);

    // Traffic after the server's end.
    v.after_end = data.len().saturating_sub(limit) + t.not_recorded;
    if let Some(end) = t.server_end {
        if end.kind == ServerEndKind::Rejected {
            if v.desynchronised {
                // The 0xFF answered bytes the client meant otherwise; it
                // did not know it was rejected.
            } else if v.after_end > 0 {
                let frame = frame_number_at(data, limit);
                tally.fail(
                    SENT_AFTER_REJECT,
                    fail(
                        Some(frame),
                        &data[limit..],
                        format!(
                            "the client sent {} more bytes after the server's 0xFF",
                            v.after_end
                        ),
                    ),
                );
            } else {
                tally.pass(SENT_AFTER_REJECT);
            }
        }
    }

    let replies: Vec<u8> = t.replies.iter().map(|r| r.byte).collect();
    let mut summary = format!(
        "connection {}: {} frame{} ({}), replies [{}]",
        t.id,
        v.frames,
        if v.frames == 1 { "" } else { "s" },
        compress(&kinds),
        hex(&replies)
    );
    for r in &t.replies {
        match r.cause {
            ReplyCause::Rule(violation) => summary.push_str(&format!(
                "; the server rejected frame {} ({})",
                r.frame,
                violation.rule()
            )),
            ReplyCause::Scenario(s) => summary.push_str(&format!(
                "; the server rejected frame {} (scenario {s})",
                r.frame
            )),
            ReplyCause::Accepted => {}
        }
    }
    summary.push_str(match (t.server_end.map(|e| e.kind), t.client_eof) {
        (Some(ServerEndKind::Closed), _) => "; closed after CLOSE",
        (Some(ServerEndKind::Rejected), _) => "; closed after 0xFF",
        (Some(ServerEndKind::Dropped), _) => "; dropped by the server (scenario)",
        (None, true) => "; the client ended its stream",
        (None, false) => "; still open when the run ended",
    });
    if v.desynchronised {
        summary.push_str("; a wrong length put client and server out of step (the server's frame numbers differ from the client's), so traffic after 0xFF is not judged");
    }
    if let Some(c) = closed_at {
        let extra = data.len() - (c + 1);
        if extra > 0 && close_with_length(data, c).is_none() {
            summary.push_str(&format!("; {extra} bytes after CLOSE were not processed"));
        }
    }
    v.summary = summary;
    v
}

fn blame(t: &ClientTranscript, frame: Option<usize>, bytes: &[u8], detail: String) -> Failure {
    Failure {
        connection: Some(t.id),
        probe: None,
        frame,
        bytes: hex(bytes),
        detail,
        ..Failure::default()
    }
}

/// The length of a payload frame held: both length rules pass once.
fn confirm_length(pending: &mut Option<(usize, usize)>, tally: &mut Tally) {
    if pending.take().is_some() {
        tally.pass(LENGTH_NOT_BYTES);
        tally.pass(PAYLOAD_TOO_LONG);
    }
}

/// The end of a CLOSE sent as `04`, a length and a payload, if it was.
fn close_with_length(data: &[u8], c: usize) -> Option<usize> {
    let rest = &data[c + 1..];
    let len = usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?]));
    (rest.len() == 2 + len).then_some(data.len())
}

fn judge_close(t: &ClientTranscript, c: usize, number: usize, tally: &mut Tally) {
    let fail = |frame: Option<usize>, bytes: &[u8], detail: String| blame(t, frame, bytes, detail);
    let data = &t.received;
    match close_with_length(data, c) {
        Some(end) => tally.fail(
            CLOSE_NOT_ONE_BYTE,
            fail(
                Some(number),
                &data[c..end],
                format!(
                    "CLOSE was sent with a length field and {} payload bytes; CLOSE is the single byte 0x04",
                    end - c - 3
                ),
            ),
        ),
        None => tally.pass(CLOSE_NOT_ONE_BYTE),
    }
}

fn judge_partial(t: &ClientTranscript, pos: usize, v: &mut ConnectionVerdict, tally: &mut Tally) {
    let fail = |frame: Option<usize>, bytes: &[u8], detail: String| blame(t, frame, bytes, detail);
    let data = &t.received;
    let number = v.frames + 1;
    let rest = &data[pos..];
    if rest.len() < HEADER_LEN {
        return;
    }
    let header = [rest[1], rest[2]];
    let declared = usize::from(u16::from_le_bytes(header));
    if let Some(d) = diagnose_long(data, header, pos + HEADER_LEN) {
        tally.fail(
            LENGTH_NOT_BYTES,
            fail(
                Some(number),
                &data[pos..pos + HEADER_LEN + d.meant],
                describe(d, declared),
            ),
        );
        v.frames = number;
        return;
    }
    let stalled = t.end_ms.saturating_sub(t.last_byte_ms) >= STALL_MS;
    if stalled && t.server_end.is_none() {
        tally.fail(
            LENGTH_NOT_BYTES,
            fail(
                Some(number),
                rest,
                format!(
                    "length field says {declared} bytes but only {} followed, and the client then waited {} ms: the length counts more than the payload",
                    rest.len() - HEADER_LEN,
                    t.end_ms - t.last_byte_ms
                ),
            ),
        );
        v.frames = number;
    }
}

/// The 1-based number of the frame that the byte at `offset` belongs to,
/// parsing from the start without judging.
fn frame_number_at(data: &[u8], offset: usize) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos <= offset && pos < data.len() {
        n += 1;
        match parse_frame(&data[pos..]) {
            Parsed::Complete { len, .. } => pos += len,
            Parsed::Partial { .. } => break,
        }
    }
    n.max(1)
}

fn frame_kind(f: &Frame<'_>) -> &'static str {
    match f {
        Frame::Name(_) => "NAME",
        Frame::Pass(_) => "PASS",
        Frame::Msg(_) => "MSG",
        Frame::Close => "CLOSE",
        Frame::Unknown(_) => "unknown",
    }
}

/// `NAME, PASS, MSG×3, CLOSE`.
fn compress(kinds: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < kinds.len() {
        let run = kinds[i..].iter().take_while(|k| **k == kinds[i]).count();
        out.push(if run > 1 {
            format!("{}×{run}", kinds[i])
        } else {
            kinds[i].to_string()
        });
        i += run;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::RuleStatus;
    use super::super::rules::CLIENT_RULES;
    use super::*;

    fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A frame whose length field is `len`, whatever the payload.
    fn frame_len(tag: u8, len: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn login() -> Vec<u8> {
        [frame(1, b"u"), frame(2, b"A")].concat()
    }

    fn transcript(received: Vec<u8>, end: Option<(ServerEndKind, usize)>) -> ClientTranscript {
        ClientTranscript {
            id: 1,
            received,
            server_end: end.map(|(kind, received_before)| ServerEnd {
                kind,
                received_before,
            }),
            client_eof: true,
            ..ClientTranscript::default()
        }
    }

    /// The names of the failed rules, and the verdict.
    fn run(
        t: &ClientTranscript,
    ) -> (
        Vec<&'static str>,
        ConnectionVerdict,
        super::super::report::ConformReport,
    ) {
        let mut tally = Tally::new(&CLIENT_RULES);
        let v = judge_connection(t, &mut tally);
        let report = tally.into_report("client", String::new(), vec![], vec![]);
        (report.failed_rules(), v, report)
    }

    #[test]
    fn a_good_session_passes_every_rule_it_exercises() {
        let bytes = [login(), frame(3, "héllo ✓".as_bytes()), vec![4]].concat();
        let t = transcript(bytes.clone(), Some((ServerEndKind::Closed, bytes.len())));
        let (failed, v, report) = run(&t);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(v.frames, 4);
        assert_eq!(v.messages, vec!["héllo ✓".as_bytes().to_vec()]);
        assert_eq!(report.rule("LengthNotBytes").unwrap().checks, 3);
        assert_eq!(
            report.rule("CloseNotOneByte").unwrap().status,
            RuleStatus::Pass
        );
        assert_eq!(
            report.rule("SentAfterReject").unwrap().status,
            RuleStatus::NotExercised
        );
    }

    #[test]
    fn length_in_characters_is_diagnosed_and_the_walk_resynchronises() {
        let text = "héllo wörld";
        let bytes = [
            login(),
            frame_len(3, text.chars().count() as u16, text.as_bytes()),
            frame(3, b"next"),
            vec![4],
        ]
        .concat();
        // The server read 11 bytes, then rejected `l` as a tag.
        let t = transcript(bytes.clone(), Some((ServerEndKind::Rejected, bytes.len())));
        let (failed, v, report) = run(&t);
        assert_eq!(failed, ["LengthNotBytes"]);
        let f = &report.rule("LengthNotBytes").unwrap().failures[0];
        assert_eq!(f.frame, Some(3));
        assert!(f.detail.contains("counts characters"), "{}", f.detail);
        assert!(v.desynchronised);
        assert_eq!(v.messages, vec![text.as_bytes().to_vec(), b"next".to_vec()]);
        assert_eq!(v.frames, 5);
    }

    #[test]
    fn other_length_bugs_are_named() {
        // JavaScript's length: UTF-16 code units.
        let emoji = "a😀b";
        let bytes = [
            login(),
            frame_len(3, emoji.encode_utf16().count() as u16, emoji.as_bytes()),
        ]
        .concat();
        let d = diagnose_short(&bytes, [4, 0], login().len() + HEADER_LEN, 4).unwrap();
        assert_eq!(
            d,
            Diagnosis {
                bug: LengthBug::Utf16Units,
                meant: 6
            }
        );
        // Big-endian: 258 bytes announced as 02 01 read little-endian is 513.
        let payload = vec![b'x'; 258];
        let mut be = login();
        be.extend_from_slice(&[3, 1, 2]);
        be.extend_from_slice(&payload);
        let mut t = transcript(be, None);
        t.last_byte_ms = 10;
        t.end_ms = 20;
        let (failed, _, report) = run(&t);
        assert_eq!(failed, ["LengthNotBytes"]);
        assert!(report.rule("LengthNotBytes").unwrap().failures[0]
            .detail
            .contains("big-endian"));
        // A payload over 65535 bytes whose length wrapped around.
        let big = vec![b'y'; 65_540];
        let bytes = [login(), frame_len(3, 4, &big), vec![4]].concat();
        let t = transcript(bytes, Some((ServerEndKind::Rejected, 20)));
        let (failed, _, _) = run(&t);
        assert_eq!(failed, ["PayloadTooLong"]);
    }

    #[test]
    fn a_client_that_stalls_mid_frame_has_a_long_length() {
        let bytes = [login(), frame_len(3, 10, b"four")].concat();
        let mut t = transcript(bytes, None);
        t.client_eof = false;
        t.last_byte_ms = 5;
        t.end_ms = 5 + STALL_MS;
        assert_eq!(run(&t).0, ["LengthNotBytes"]);
        // Ending the stream at once is not a length bug.
        t.end_ms = 6;
        assert!(run(&t).0.is_empty());
    }

    #[test]
    fn unknown_and_out_of_order_tags() {
        let t = transcript(frame(0, b"u"), Some((ServerEndKind::Rejected, 4)));
        let (failed, _, report) = run(&t);
        assert_eq!(failed, ["UnknownTag"]);
        assert_eq!(
            report.rule("UnknownTag").unwrap().failures[0].bytes,
            "00 01 00 75"
        );
        let bytes = [frame(1, b"u"), frame(3, b"m")].concat();
        let t = transcript(bytes.clone(), Some((ServerEndKind::Rejected, bytes.len())));
        let (failed, _, report) = run(&t);
        assert_eq!(failed, ["OutOfOrder"]);
        assert_eq!(
            report.rule("OutOfOrder").unwrap().failures[0].frame,
            Some(2)
        );
    }

    #[test]
    fn traffic_after_the_reject_fails_but_frames_in_flight_do_not() {
        let login_and_msg = [login(), frame(3, b"one")].concat();
        let more = frame(3, b"two");
        // The 0xFF for PASS went out when only NAME and PASS had arrived.
        let t = transcript(
            [login_and_msg.clone(), more.clone()].concat(),
            Some((ServerEndKind::Rejected, login().len())),
        );
        let (failed, v, report) = run(&t);
        assert_eq!(failed, ["SentAfterReject"]);
        assert_eq!(v.after_end, 12);
        assert_eq!(
            report.rule("SentAfterReject").unwrap().failures[0].frame,
            Some(3)
        );
        // The same bytes already there when the 0xFF went out: in flight.
        let all = [login_and_msg, more].concat();
        let t = transcript(all.clone(), Some((ServerEndKind::Rejected, all.len())));
        let (failed, _, report) = run(&t);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(
            report.rule("SentAfterReject").unwrap().status,
            RuleStatus::Pass
        );
    }

    #[test]
    fn close_with_a_length_is_not_one_byte() {
        let bytes = [login(), vec![4, 5, 0], b"hello".to_vec()].concat();
        let t = transcript(bytes.clone(), Some((ServerEndKind::Closed, bytes.len())));
        let (failed, _, report) = run(&t);
        assert_eq!(failed, ["CloseNotOneByte"]);
        assert_eq!(
            report.rule("CloseNotOneByte").unwrap().failures[0].bytes,
            "04 05 00 68 65 6c 6c 6f"
        );
        // A CLOSE followed by an unrelated frame is one byte; the frame is
        // only noted.
        let bytes = [login(), vec![4], frame(3, b"late")].concat();
        let t = transcript(bytes.clone(), Some((ServerEndKind::Closed, bytes.len())));
        let (failed, v, _) = run(&t);
        assert!(failed.is_empty(), "{failed:?}");
        assert!(v.summary.contains("7 bytes after CLOSE"), "{}", v.summary);
    }

    #[test]
    fn frame_numbers_count_from_one() {
        let bytes = [login(), frame(3, b"m")].concat();
        assert_eq!(frame_number_at(&bytes, 0), 1);
        assert_eq!(frame_number_at(&bytes, 4), 2);
        assert_eq!(frame_number_at(&bytes, 8), 3);
        assert_eq!(
            compress(&["NAME", "PASS", "MSG", "MSG", "CLOSE"]),
            "NAME, PASS, MSG×2, CLOSE"
        );
    }
}
