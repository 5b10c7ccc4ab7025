//! What `conform server` sends: each vector whole or split into writes, and
//! the bytes of the probes. Pure: no sockets, no clock (pauses are data).

use std::time::Duration;

use crate::proto::frame::{parse_frame, Frame, Parsed, HEADER_LEN, MAX_PAYLOAD_LEN};

use super::super::rules::{violation_rule, Rule, REPLIES};
use super::super::vectors::{ClosedBy, SessionVector};

/// Vectors up to this long are also sent one byte per write.
pub const BYTEWISE_UP_TO: usize = 1024;
/// Pause between the writes of a split vector, so that the server reads
/// each piece on its own.
const SPLIT_PAUSE: Duration = Duration::from_millis(1);
/// In one-byte-per-write runs, the first bytes of each frame are each
/// written after a pause...
const BYTEWISE_PAUSED_HEAD: usize = 6;
/// ...and then every this many bytes.
const BYTEWISE_PAUSE_EVERY: usize = 32;
/// Messages of the pipelining probe.
pub const PIPELINED: usize = 1000;

/// How a vector is cut into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitMode {
    Whole,
    Bytewise,
    HeaderSplit,
}

impl SplitMode {
    /// Every mode, in the order the runs of one vector are made.
    pub const ALL: [SplitMode; 3] = [
        SplitMode::Whole,
        SplitMode::Bytewise,
        SplitMode::HeaderSplit,
    ];

    /// What the report adds to the vector's name.
    pub fn label(self) -> &'static str {
        match self {
            SplitMode::Whole => "",
            SplitMode::Bytewise => ", one byte per write",
            SplitMode::HeaderSplit => ", tag, length and payload in separate writes",
        }
    }

    /// Whether `vector` is run this way: long vectors are not sent one
    /// byte at a time.
    pub fn applies_to(self, vector: &SessionVector) -> bool {
        self != SplitMode::Bytewise || vector.client.len() <= BYTEWISE_UP_TO
    }
}

/// One connection's plan: writes, each after a pause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub writes: Vec<(Duration, Vec<u8>)>,
    /// End the client's stream after the writes.
    pub shutdown: bool,
}

impl Plan {
    /// All of `bytes` in one write, the stream left open.
    pub fn whole(bytes: Vec<u8>) -> Plan {
        Plan {
            writes: vec![(Duration::ZERO, bytes)],
            shutdown: false,
        }
    }

    /// The sum of the pauses.
    pub fn duration(&self) -> Duration {
        self.writes.iter().map(|(p, _)| *p).sum()
    }
}

/// The frames of a byte string, as (offset, length); a partial frame at the
/// end is the rest.
pub fn frames_of(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_frame(&bytes[pos..]) {
            Parsed::Complete { len, .. } => {
                out.push((pos, len));
                pos += len;
            }
            Parsed::Partial { .. } => {
                out.push((pos, bytes.len() - pos));
                break;
            }
        }
    }
    out
}

/// The writes that send `v` the way `mode` says.
pub fn plan_for(v: &SessionVector, mode: SplitMode) -> Plan {
    let mut writes: Vec<(Duration, Vec<u8>)> = Vec::new();
    match mode {
        SplitMode::Whole => writes.push((Duration::ZERO, v.client.clone())),
        // Every byte is its own write (and, with TCP_NODELAY, its own
        // segment). The server is made to wait for the next byte inside the
        // header and the start of the payload, and every so often after:
        // a pause before every byte would make a long NAME outlast a short
        // handshake timeout.
        SplitMode::Bytewise => {
            for (at, len) in frames_of(&v.client) {
                for i in 0..len {
                    let pause = if i < BYTEWISE_PAUSED_HEAD || i % BYTEWISE_PAUSE_EVERY == 0 {
                        SPLIT_PAUSE
                    } else {
                        Duration::ZERO
                    };
                    writes.push((pause, vec![v.client[at + i]]));
                }
            }
        }
        SplitMode::HeaderSplit => {
            for (at, len) in frames_of(&v.client) {
                let f = &v.client[at..at + len];
                if len <= 1 || !(1..=3).contains(&f[0]) {
                    writes.push((SPLIT_PAUSE, f.to_vec()));
                } else {
                    writes.push((SPLIT_PAUSE, f[..1].to_vec()));
                    writes.push((SPLIT_PAUSE, f[1..len.min(HEADER_LEN)].to_vec()));
                    if len > HEADER_LEN {
                        writes.push((SPLIT_PAUSE, f[HEADER_LEN..].to_vec()));
                    }
                }
            }
        }
    }
    if let Some(first) = writes.first_mut() {
        first.0 = Duration::ZERO;
    }
    Plan {
        writes: writes.into_iter().filter(|(_, w)| !w.is_empty()).collect(),
        shutdown: v.closed_by == ClosedBy::Client,
    }
}

/// Whether a server with payload limit `max_payload` (None: 65535) can run
/// `v`: a vector made for a limit runs only against that limit, and no
/// other may carry a payload over it.
pub fn fits_server(v: &SessionVector, max_payload: Option<usize>) -> bool {
    let limit = max_payload.unwrap_or(MAX_PAYLOAD_LEN);
    match v.max_payload {
        Some(m) => Some(m) == max_payload,
        None => frames_of(&v.client)
            .iter()
            .all(|&(at, len)| len <= HEADER_LEN || v.client[at] == 4 || len - HEADER_LEN <= limit),
    }
}

/// Only the header of a MSG one byte over the server's limit: the 0xFF must
/// come without the payload.
pub fn over_limit_vector(max: usize) -> SessionVector {
    let mut client = login(b"conform-limit");
    client.push(3);
    client.extend_from_slice(&u16::try_from(max + 1).unwrap_or(u16::MAX).to_le_bytes());
    SessionVector {
        id: format!("probe-over-limit-{max}"),
        description: format!(
            "A MSG header announcing {} bytes, one over the server's limit.",
            max + 1
        ),
        spec: vec!["protocol.md#limits".into()],
        mid_frame: false,
        max_payload: Some(max),
        client,
        replies: vec![0, 0, 0xFF],
        closed_by: ClosedBy::Server,
        rule: Some("PayloadOverLimit".into()),
        log: Vec::new(),
    }
}

/// `long` if it fits the server's payload limit, else `short`, cut to fit.
pub fn fitted(long: String, short: String, limit: usize) -> Vec<u8> {
    let mut bytes = if long.len() <= limit { long } else { short }.into_bytes();
    bytes.truncate(limit.max(1));
    bytes
}

/// The bytes of one frame.
pub fn frame(f: Frame<'_>) -> Vec<u8> {
    f.to_bytes().unwrap_or_default()
}

/// NAME `name` and a PASS every server accepts.
pub fn login(name: &[u8]) -> Vec<u8> {
    let mut out = frame(Frame::Name(name));
    out.extend(frame(Frame::Pass(b"A")));
    out
}

/// The pipelining probe: one client's messages, all in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelinedSession {
    pub name: Vec<u8>,
    pub messages: Vec<Vec<u8>>,
    /// NAME, PASS, every MSG and CLOSE.
    pub bytes: Vec<u8>,
    /// A 0x00 for each frame.
    pub replies: Vec<u8>,
}

/// NAME, PASS, `PIPELINED` MSG frames and CLOSE, each payload within `limit`.
pub fn pipelined_session(limit: usize) -> PipelinedSession {
    let name = fitted("conform-pipeline".into(), "p".into(), limit);
    let messages: Vec<Vec<u8>> = (0..PIPELINED)
        .map(|i| fitted(format!("pipelined message {i}"), format!("{i}"), limit))
        .collect();
    let mut bytes = login(&name);
    for m in &messages {
        bytes.extend(frame(Frame::Msg(m)));
    }
    bytes.push(4);
    PipelinedSession {
        name,
        messages,
        bytes,
        replies: vec![0; PIPELINED + 3],
    }
}

/// The name of client `i` of the concurrency probe.
pub fn concurrent_name(i: usize, limit: usize) -> Vec<u8> {
    fitted(format!("conform-client-{i}"), format!("c{i}"), limit)
}

/// The message of client `i` of the concurrency probe.
pub fn concurrent_message(i: usize, limit: usize) -> Vec<u8> {
    fitted(format!("concurrent message {i}"), format!("{i}"), limit)
}

/// A probe that must get its 0xFF from the server's handshake timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingProbe {
    pub rule: Rule,
    pub probe: String,
    pub client: Vec<u8>,
    pub replies: Vec<u8>,
}

/// A silent client, a client that stops after NAME, and one that stops in
/// the middle of a MSG: each must get 0xFF once the handshake timeout passed.
pub fn timing_probes() -> Vec<TimingProbe> {
    let handshake = violation_rule("HandshakeTimeout").unwrap_or(REPLIES);
    let frame_timeout = violation_rule("FrameTimeout").unwrap_or(REPLIES);
    let mut partial = login(b"conform-timeout");
    partial.extend_from_slice(&[3, 5, 0, b'h', b'e']);
    vec![
        TimingProbe {
            rule: handshake,
            probe: "probe handshake timeout: connect and send nothing".into(),
            client: Vec::new(),
            replies: vec![0xFF],
        },
        TimingProbe {
            rule: handshake,
            probe: "probe handshake timeout: NAME, then nothing".into(),
            client: frame(Frame::Name(b"conform-timeout")),
            replies: vec![0x00, 0xFF],
        },
        TimingProbe {
            rule: frame_timeout,
            probe: "probe frame timeout: NAME, PASS, then half a MSG".into(),
            client: partial,
            replies: vec![0x00, 0x00, 0xFF],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(client: &[u8]) -> SessionVector {
        SessionVector {
            id: "t".into(),
            description: String::new(),
            spec: vec!["protocol.md#close".into()],
            mid_frame: false,
            max_payload: None,
            client: client.to_vec(),
            replies: vec![0],
            closed_by: ClosedBy::Server,
            rule: None,
            log: vec![],
        }
    }

    #[test]
    fn header_split_separates_tag_length_payload() {
        let mut bytes = login(b"u");
        bytes.push(4);
        let plan = plan_for(&vector(&bytes), SplitMode::HeaderSplit);
        let writes: Vec<Vec<u8>> = plan.writes.into_iter().map(|(_, w)| w).collect();
        assert_eq!(
            writes,
            vec![
                vec![1],
                vec![1, 0],
                b"u".to_vec(),
                vec![2],
                vec![1, 0],
                b"A".to_vec(),
                vec![4]
            ]
        );
        let bytewise = plan_for(&vector(&bytes), SplitMode::Bytewise);
        assert_eq!(bytewise.writes.len(), bytes.len());
        assert_eq!(
            bytewise.writes[0].0,
            Duration::ZERO,
            "no pause before the first write"
        );
    }

    #[test]
    fn vectors_run_only_against_the_limit_they_fit() {
        let mut big = login(b"u");
        big.extend(frame(Frame::Msg(&[b'x'; 100])));
        assert!(fits_server(&vector(&big), None));
        assert!(!fits_server(&vector(&big), Some(16)));
        let over = over_limit_vector(16);
        assert!(fits_server(&over, Some(16)));
        assert!(!fits_server(&over, None));
        assert_eq!(fitted("long name".into(), "s".into(), 4), b"s");
    }

    #[test]
    fn the_pipelined_session_expects_a_reply_per_frame() {
        let s = pipelined_session(65535);
        assert_eq!(frames_of(&s.bytes).len(), PIPELINED + 3);
        assert_eq!(s.replies.len(), PIPELINED + 3);
        assert_eq!(s.bytes.last(), Some(&4));
    }
}
