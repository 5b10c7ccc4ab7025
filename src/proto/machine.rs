//! The connection state machine: a pure function from (state, frame) to
//! (next state, reply, effect). No IO, no clock; the shell carries out the
//! effect and sends the reply.

use bytes::Bytes;

use super::frame::Frame;

/// Reply byte for a successful transaction.
pub const ACK: u8 = 0x00;
/// Reply byte for a failed transaction; the connection closes after it.
pub const NAK: u8 = 0xFF;

/// Where a connection is in its session (spec: #states).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum State {
    /// C: accepted; NAME is expected.
    Connected,
    /// N: named; PASS is expected.
    Named { name: Bytes },
    /// V: a PASS is being verified; nothing more is processed until the
    /// verdict (spec: #pass).
    Verifying { name: Bytes },
    /// P/M: authenticated; any number of MSG.
    Authenticated { name: Bytes },
    /// X: closed; nothing more is processed.
    Closed,
}

impl State {
    /// The name a client gave, once it gave one.
    pub fn name(&self) -> Option<&Bytes> {
        match self {
            State::Named { name } | State::Verifying { name } | State::Authenticated { name } => {
                Some(name)
            }
            State::Connected | State::Closed => None,
        }
    }

    /// The one-letter label the spec's state table uses.
    pub fn label(&self) -> &'static str {
        match self {
            State::Connected => "C",
            State::Named { .. } => "N",
            State::Verifying { .. } => "V",
            State::Authenticated { .. } => "P",
            State::Closed => "X",
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, State::Closed)
    }

    /// NAME and PASS are not done yet (C, N, V): the handshake timeout runs.
    pub fn is_handshaking(&self) -> bool {
        matches!(
            self,
            State::Connected | State::Named { .. } | State::Verifying { .. }
        )
    }
}

/// What the server sends back for one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Response {
    /// 0x00. For a MSG, only once its `Append` effect succeeded.
    Ack,
    /// 0xFF, naming the rule the transaction broke.
    Reject(Violation),
    /// Not yet: the reply comes with the password's verdict.
    Pending,
    /// Nothing: the connection is already closed.
    Silent,
}

impl Response {
    /// The reply byte, if any.
    pub fn byte(&self) -> Option<u8> {
        match self {
            Response::Ack => Some(ACK),
            Response::Reject(_) => Some(NAK),
            Response::Pending | Response::Silent => None,
        }
    }
}

/// What the shell must do besides replying.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect<'a> {
    /// Append one record to the log, then send the Ack.
    Append { name: Bytes, message: &'a [u8] },
    /// Verify the password for the name; the verdict comes back through
    /// [`verdict`], and the PASS's reply with it.
    Verify { name: Bytes, password: &'a [u8] },
    /// Send the reply, then close the connection gracefully.
    Close,
}

/// One variant per rule a transaction can break; the names are the spec's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Violation {
    #[error("NAME was empty; send a non-empty name")]
    EmptyName,
    #[error("NAME started with a NUL byte; names must not start with 0x00")]
    NameStartsWithNul,
    #[error("PASS was empty; send a non-empty password")]
    EmptyPassword,
    #[error("password rejected: it does not verify for this name")]
    PasswordRejected,
    #[error("MSG was empty; send at least one byte")]
    EmptyMessage,
    #[error("frame with tag {tag} arrived in state {state}; the client must send NAME, then PASS, then MSG")]
    OutOfOrder { state: &'static str, tag: u8 },
    #[error("unknown tag byte 0x{0:02x}; tags are 1 NAME, 2 PASS, 3 MSG, 4 CLOSE")]
    UnknownTag(u8),
    #[error("frame announced {len} bytes, over this server's limit of {max} bytes")]
    PayloadOverLimit { len: usize, max: usize },
    #[error("the server could not append the message to its log; nothing was written")]
    AppendFailed,
    #[error("NAME and PASS were not completed within the handshake timeout")]
    HandshakeTimeout,
    #[error("a frame stayed incomplete longer than the handshake timeout")]
    FrameTimeout,
    #[error("the server is shutting down and the frame in progress did not complete in time")]
    ShuttingDown,
}

impl Violation {
    /// The spec rule's name, as used in reports and diagnostics.
    //= spec/protocol.md#rules
    //# Each rejection MUST name exactly one rule from the following table.
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::EmptyName => "EmptyName",
            Violation::NameStartsWithNul => "NameStartsWithNul",
            Violation::EmptyPassword => "EmptyPassword",
            Violation::PasswordRejected => "PasswordRejected",
            Violation::EmptyMessage => "EmptyMessage",
            Violation::OutOfOrder { .. } => "OutOfOrder",
            Violation::UnknownTag(_) => "UnknownTag",
            Violation::PayloadOverLimit { .. } => "PayloadOverLimit",
            Violation::AppendFailed => "AppendFailed",
            Violation::HandshakeTimeout => "HandshakeTimeout",
            Violation::FrameTimeout => "FrameTimeout",
            Violation::ShuttingDown => "ShuttingDown",
        }
    }
}

/// The result of one transition.
pub type Step<'a> = (State, Response, Option<Effect<'a>>);

fn reject<'a>(violation: Violation) -> Step<'a> {
    //= spec/protocol.md#replies
    //# A rejected frame MUST have no effect other than its 0xFF reply and the close.
    //= spec/protocol.md#replies
    //# After sending 0xFF the server MUST close the connection.
    (
        State::Closed,
        Response::Reject(violation),
        Some(Effect::Close),
    )
}

/// Takes one frame in one state: the whole of the spec's state table.
//= spec/protocol.md#states
//# For each frame, the server MUST move to the next state, send the reply and carry out the effect that the state table gives for the current state, the frame's tag and its payload.
//= spec/protocol.md#replies
//# The server MUST answer each frame it processes with exactly one reply byte, 0x00 for success or 0xFF for failure.
pub fn step(state: State, frame: Frame<'_>) -> Step<'_> {
    match (state, frame) {
        //= spec/protocol.md#states
        //# Once a connection is closed, the server MUST NOT process any
        //# further bytes from it.
        (State::Closed, _) => (State::Closed, Response::Silent, None),

        //= spec/protocol.md#close
        //# The server MUST accept CLOSE in every state that is not closed, reply
        //# 0x00, and then close the connection.
        (_, Frame::Close) => (State::Closed, Response::Ack, Some(Effect::Close)),

        //= spec/protocol.md#unknown-tags
        //# The server MUST reply 0xFF to a frame with an unknown tag.
        (_, Frame::Unknown(tag)) => reject(Violation::UnknownTag(tag)),

        //= spec/protocol.md#name
        //# The server MUST reject a NAME whose payload is empty.
        (State::Connected, Frame::Name([])) => reject(Violation::EmptyName),
        //= spec/protocol.md#name
        //# The server MUST reject a NAME whose first payload byte is 0x00.
        (State::Connected, Frame::Name([0, ..])) => reject(Violation::NameStartsWithNul),
        //= spec/protocol.md#name
        //# The server MUST keep the whole NAME payload as the name, including 0x00 bytes after the first byte.
        (State::Connected, Frame::Name(name)) => (
            State::Named {
                name: Bytes::copy_from_slice(name),
            },
            Response::Ack,
            None,
        ),

        //= spec/protocol.md#pass
        //# The server MUST reject a PASS whose payload is empty.
        (State::Named { .. }, Frame::Pass([])) => reject(Violation::EmptyPassword),
        //= spec/protocol.md#pass
        //# The server MUST verify a non-empty PASS for the name before it replies, and MUST NOT process any frame after the PASS until the verdict.
        (State::Named { name }, Frame::Pass(password)) => {
            let effect = Effect::Verify {
                name: name.clone(),
                password,
            };
            (State::Verifying { name }, Response::Pending, Some(effect))
        }

        // The engine holds every frame back until the verdict, so none
        // reaches a connection in V; were one to, it is out of order.

        //= spec/protocol.md#msg
        //# The server MUST reject a MSG whose payload is empty.
        (State::Authenticated { .. }, Frame::Msg([])) => reject(Violation::EmptyMessage),
        //= spec/protocol.md#msg
        //# The server MUST NOT acknowledge a MSG before its record was
        //# appended to the log.
        //= spec/protocol.md#msg
        //# For each accepted MSG, the server MUST append exactly one record to the log.
        (State::Authenticated { name }, Frame::Msg(message)) => {
            let effect = Effect::Append {
                name: name.clone(),
                message,
            };
            (State::Authenticated { name }, Response::Ack, Some(effect))
        }

        //= spec/protocol.md#states
        //# The server MUST reject a NAME, PASS or MSG frame whose tag is not the
        //# one the current state expects.
        (state, frame) => reject(Violation::OutOfOrder {
            state: state.label(),
            tag: frame.tag(),
        }),
    }
}

/// The verdict on the password of a connection in V: P and 0x00, or the
/// close and 0xFF. In any other state there is nothing to decide.
//= spec/protocol.md#pass
//# The server MUST reply 0x00 to a PASS whose password verifies and move to state P, and MUST reject a PASS whose password does not verify.
pub fn verdict<'a>(state: State, verified: bool) -> Step<'a> {
    match state {
        State::Verifying { name } if verified => {
            (State::Authenticated { name }, Response::Ack, None)
        }
        State::Verifying { .. } => reject(Violation::PasswordRejected),
        other => (other, Response::Silent, None),
    }
}

/// The reference's password rule, msglog's default authenticator: only the
/// first byte counts, and it must be odd (`A` yes, `B` and `BAAA` no).
/// It is compatibility, not security.
//= spec/protocol.md#pass
//# With the reference's rule, a password MUST verify exactly when its first byte is odd.
pub fn reference_rule_accepts(password: &[u8]) -> bool {
    password.first().is_some_and(|b| b % 2 == 1)
}

/// A transaction that failed outside the table: a frame over the server's
/// payload limit, an append the log could not take, or a timeout.
//= spec/protocol.md#msg
//# If the record of a MSG cannot be appended, the server MUST reply 0xFF and close the connection.
pub fn fail<'a>(state: State, violation: Violation) -> Step<'a> {
    match state {
        State::Closed => (State::Closed, Response::Silent, None),
        _ => reject(violation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> State {
        State::Named {
            name: Bytes::from_static(b"u"),
        }
    }
    fn authed() -> State {
        State::Authenticated {
            name: Bytes::from_static(b"u"),
        }
    }

    fn tag_frame(tag: u8, payload: &[u8]) -> Frame<'_> {
        match tag {
            1 => Frame::Name(payload),
            2 => Frame::Pass(payload),
            3 => Frame::Msg(payload),
            4 => Frame::Close,
            t => Frame::Unknown(t),
        }
    }

    /// The expected (next state label, reply byte, effect kind) of every
    /// state × tag × payload case; the same table as spec/protocol.md#states.
    fn expected(
        state: &State,
        tag: u8,
        payload: &[u8],
    ) -> (&'static str, Option<u8>, &'static str) {
        let reject = ("X", Some(NAK), "close");
        match (state.label(), tag) {
            ("X", _) => ("X", None, "none"),
            (_, 4) => ("X", Some(ACK), "close"),
            ("C", 1) if payload.is_empty() || payload[0] == 0 => reject,
            ("C", 1) => ("N", Some(ACK), "none"),
            ("N", 2) if payload.is_empty() => reject,
            ("N", 2) => ("V", None, "verify"),
            ("P", 3) if payload.is_empty() => reject,
            ("P", 3) => ("P", Some(ACK), "append"),
            _ => reject,
        }
    }

    //= spec/protocol.md#states
    //= type=test
    //# The server MUST reject a NAME, PASS or MSG frame whose tag is not the
    //# one the current state expects.
    //= spec/protocol.md#states
    //= type=test
    //# Once a connection is closed, the server MUST NOT process any
    //# further bytes from it.
    //= spec/protocol.md#states
    //= type=test
    //# For each frame, the server MUST move to the next state, send the reply and carry out the effect that the state table gives for the current state, the frame's tag and its payload.
    #[test]
    fn every_state_every_tag_every_payload_case() {
        let payloads: [&[u8]; 5] = [b"", b"\0x", b"A", b"B", b"AAAA"];
        for state in [State::Connected, named(), authed(), State::Closed] {
            for tag in 0..=255u8 {
                for payload in payloads {
                    let (want_state, want_reply, want_effect) = expected(&state, tag, payload);
                    let (next, response, effect) = step(state.clone(), tag_frame(tag, payload));
                    let effect_kind = match effect {
                        None => "none",
                        Some(Effect::Close) => "close",
                        Some(Effect::Append { .. }) => "append",
                        Some(Effect::Verify { .. }) => "verify",
                    };
                    assert_eq!(
                        (next.label(), response.byte(), effect_kind),
                        (want_state, want_reply, want_effect),
                        "state {} tag {tag} payload {payload:?}",
                        state.label()
                    );
                }
            }
        }
    }

    #[test]
    fn the_name_is_known_from_n_to_p() {
        let name = Bytes::from_static(b"u");
        assert_eq!(State::Connected.name(), None);
        assert_eq!(named().name(), Some(&name));
        assert_eq!(State::Verifying { name: name.clone() }.name(), Some(&name));
        assert_eq!(authed().name(), Some(&name));
        assert_eq!(State::Closed.name(), None);
    }

    //= spec/protocol.md#rules
    //= type=test
    //# Each rejection MUST name exactly one rule from the following table.
    #[test]
    fn rejections_name_their_rule() {
        let cases: [(State, Frame, Violation); 6] = [
            (State::Connected, Frame::Name(b""), Violation::EmptyName),
            (
                State::Connected,
                Frame::Name(b"\0a"),
                Violation::NameStartsWithNul,
            ),
            (named(), Frame::Pass(b""), Violation::EmptyPassword),
            (authed(), Frame::Msg(b""), Violation::EmptyMessage),
            (
                State::Connected,
                Frame::Msg(b"hi"),
                Violation::OutOfOrder { state: "C", tag: 3 },
            ),
            (authed(), Frame::Unknown(0xFF), Violation::UnknownTag(0xFF)),
        ];
        for (state, frame, violation) in cases {
            assert_eq!(step(state, frame).1, Response::Reject(violation));
        }
        let verifying = State::Verifying {
            name: Bytes::from_static(b"u"),
        };
        assert_eq!(
            verdict(verifying, false).1,
            Response::Reject(Violation::PasswordRejected)
        );
    }

    //= spec/protocol.md#pass
    //= type=test
    //# The server MUST verify a non-empty PASS for the name before it replies, and MUST NOT process any frame after the PASS until the verdict.
    //= spec/protocol.md#pass
    //= type=test
    //# The server MUST reply 0x00 to a PASS whose password verifies and move to state P, and MUST reject a PASS whose password does not verify.
    #[test]
    fn a_pass_waits_for_its_verdict() {
        let (v, r, e) = step(named(), Frame::Pass(b"secret"));
        assert_eq!(v.label(), "V");
        assert_eq!(r, Response::Pending);
        assert_eq!(r.byte(), None);
        assert_eq!(
            e,
            Some(Effect::Verify {
                name: Bytes::from_static(b"u"),
                password: b"secret"
            })
        );
        assert_eq!(verdict(v.clone(), true), (authed(), Response::Ack, None));
        let (x, r, e) = verdict(v, false);
        assert_eq!(
            (x.label(), r.byte(), e),
            ("X", Some(NAK), Some(Effect::Close))
        );
        // Outside V there is nothing to decide.
        assert_eq!(verdict(authed(), false), (authed(), Response::Silent, None));
    }

    //= spec/protocol.md#pass
    //= type=test
    //# With the reference's rule, a password MUST verify exactly when its first byte is odd.
    #[test]
    fn the_reference_rule_looks_at_the_first_byte_only() {
        for b in 0..=255u8 {
            assert_eq!(reference_rule_accepts(&[b, 0, 1]), b % 2 == 1);
        }
        assert!(reference_rule_accepts(b"A") && reference_rule_accepts(b"a"));
        assert!(!reference_rule_accepts(b"B") && !reference_rule_accepts(b"BAAA"));
        assert!(!reference_rule_accepts(b""));
    }

    //= spec/protocol.md#name
    //= type=test
    //# The server MUST keep the whole NAME payload as the name, including 0x00 bytes after the first byte.
    #[test]
    fn name_is_kept_whole_and_carried_to_appends() {
        let (s, _, _) = step(State::Connected, Frame::Name(b"Al\0ice"));
        let (s, _, _) = step(s, Frame::Pass(b"A"));
        let (s, _, _) = verdict(s, true);
        let (_, r, e) = step(s, Frame::Msg(b"hi"));
        assert_eq!(r, Response::Ack);
        assert_eq!(
            e,
            Some(Effect::Append {
                name: Bytes::from_static(b"Al\0ice"),
                message: b"hi"
            })
        );
    }

    //= spec/protocol.md#msg
    //= type=test
    //# If the record of a MSG cannot be appended, the server MUST reply 0xFF and close the connection.
    #[test]
    fn fail_closes_with_nak_unless_closed() {
        assert_eq!(
            fail(authed(), Violation::AppendFailed),
            (
                State::Closed,
                Response::Reject(Violation::AppendFailed),
                Some(Effect::Close)
            )
        );
        assert_eq!(
            fail(State::Closed, Violation::AppendFailed),
            (State::Closed, Response::Silent, None)
        );
    }
}
