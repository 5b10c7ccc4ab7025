//! Model-based test of the protocol core: random sessions, valid and
//! invalid frames alike, are run through a reference model of the spec's
//! state table (`msglog::testkit::reference::model_step`) and through the
//! real session engine (`MemorySession`); after every frame the reply, the
//! rule, the log and the state must agree.

mod common;

use common::watchdog::bounded;
use msglog::proto::record;
use msglog::testkit::check;
use msglog::testkit::reference::{model_over_limit, model_step, ModelState, ModelStep};
use msglog::testkit::MemorySession;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

/// The payload limit the session under test is configured with: low, so
/// over-limit frames are cheap to generate.
const LIMIT: u16 = 64;

#[derive(Clone, Debug)]
enum Transition {
    /// One frame, fed `chunk` bytes at a time. For tags other than 1..=3
    /// the frame is the tag byte alone and `payload` is not sent.
    Frame {
        tag: u8,
        payload: Vec<u8>,
        chunk: usize,
    },
    /// A NAME, PASS or MSG header announcing `len` > LIMIT, then `sent`
    /// bytes of its payload.
    OverLimit { tag: u8, len: u16, sent: Vec<u8> },
}

impl Transition {
    fn wire(&self) -> Vec<u8> {
        match self {
            Transition::Frame { tag, payload, .. } if (1..=3).contains(tag) => {
                let len = u16::try_from(payload.len()).expect("payloads are short");
                [&[*tag][..], &len.to_le_bytes(), payload].concat()
            }
            Transition::Frame { tag, .. } => vec![*tag],
            Transition::OverLimit { tag, len, sent } => {
                [&[*tag][..], &len.to_le_bytes(), sent].concat()
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Model {
    state: ModelState,
    /// The table row the last transition took.
    last: Option<ModelStep>,
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 1..12),
        1 => vec(any::<u8>(), usize::from(LIMIT)..=usize::from(LIMIT)),
    ]
}

fn frame(
    tag: impl Strategy<Value = u8> + 'static,
    payload: impl Strategy<Value = Vec<u8>> + 'static,
) -> BoxedStrategy<Transition> {
    (tag, payload, prop_oneof![Just(usize::MAX), 1..4usize])
        .prop_map(|(tag, payload, chunk)| Transition::Frame {
            tag,
            payload,
            chunk,
        })
        .boxed()
}

struct Table;

impl ReferenceStateMachine for Table {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            state: ModelState::Connected,
            last: None,
        })
        .boxed()
    }

    fn transitions(model: &Model) -> BoxedStrategy<Transition> {
        // Mostly the frame the state expects, so sessions get deep; every
        // kind of wrong frame often enough to be tried in every state.
        let expected = match model.state {
            ModelState::Connected => frame(
                Just(1),
                payload().prop_map(|mut p| {
                    p[0] |= 1;
                    p
                }),
            ),
            ModelState::Named(_) => frame(
                Just(2),
                payload().prop_map(|mut p| {
                    p[0] |= 1;
                    p
                }),
            ),
            ModelState::Authenticated(_) | ModelState::Closed => frame(Just(3), payload()),
        };
        prop_oneof![
            8 => expected,
            1 => frame(Just(4), Just(Vec::new())),
            1 => frame(1..=3u8, Just(Vec::new())),
            1 => frame(Just(1), Just(vec![0, b'x'])),
            1 => frame(Just(2), payload().prop_map(|mut p| {
                p[0] &= !1;
                p
            })),
            2 => frame(1..=3u8, payload()),
            // Unknown tags, the edges of the range as often as its inside.
            1 => frame(
                prop_oneof![Just(0u8), Just(5), Just(0x7F), Just(0x80), Just(0xFF), 5..=255u8],
                Just(Vec::new())
            ),
            1 => (1..=3u8, LIMIT + 1..=u16::MAX, vec(any::<u8>(), 0..8))
                .prop_map(|(tag, len, sent)| Transition::OverLimit { tag, len, sent }),
        ]
        .boxed()
    }

    fn apply(mut model: Model, transition: &Transition) -> Model {
        let step = match transition {
            Transition::Frame { tag, payload, .. } => model_step(&model.state, *tag, payload),
            Transition::OverLimit { .. } => model_over_limit(&model.state),
        };
        model.state = step.next.clone();
        model.last = Some(step);
        model
    }
}

struct Core;

impl StateMachineTest for Core {
    type SystemUnderTest = MemorySession;
    type Reference = Table;

    fn init_test(_: &Model) -> MemorySession {
        MemorySession::new(Some(LIMIT))
    }

    fn apply(session: MemorySession, model: &Model, transition: Transition) -> MemorySession {
        let (replies_before, log_before) = (session.replies().len(), session.log().len());
        let ignored_before = session.ignored();
        let closed_before = session.rule().is_some() || session.state().is_closed();
        let wire = transition.wire();
        let chunk = match transition {
            Transition::Frame { chunk, .. } => chunk,
            Transition::OverLimit { .. } => 1,
        };
        let pieces: Vec<Vec<u8>> = wire
            .chunks(chunk.min(wire.len()).max(1))
            .map(<[u8]>::to_vec)
            .collect();
        let session = bounded(&wire, move || {
            let mut session = session;
            for piece in &pieces {
                session.feed(piece);
            }
            session
        });
        let step = model.last.as_ref().expect("apply sets the last step");
        let new_replies = &session.replies()[replies_before..];
        let rule = if closed_before { None } else { session.rule() };
        assert_eq!(
            new_replies,
            step.reply.as_slice(),
            "reply to {transition:?}"
        );
        assert_eq!(rule, step.rule, "rule for {transition:?}");
        let want_log = step
            .append
            .as_ref()
            .map_or_else(Vec::new, |(name, message)| {
                if let Err(broken) = check::record_pairs(&[(&name[..], &message[..])]) {
                    panic!("{broken}");
                }
                record(name, message)
            });
        assert_eq!(&session.log()[log_before..], &want_log[..]);
        assert_eq!(
            session.state().is_closed(),
            model.state == ModelState::Closed
        );
        if closed_before {
            assert_eq!(
                session.ignored() - ignored_before,
                wire.len() as u64,
                "bytes after the close are ignored, all of them"
            );
        }
        session
    }

    fn check_invariants(session: &MemorySession, model: &Model) {
        assert_eq!(ModelState::of(session.state()), model.state);
        // Every transition is a whole frame (or closes), so an open session
        // is always on a frame boundary.
        if model.state != ModelState::Closed {
            assert_eq!(session.buffered(), 0);
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    //= spec/protocol.md#states
    //= type=test
    //# The server MUST reject a NAME, PASS or MSG frame whose tag is not the
    //# one the current state expects.
    //= spec/protocol.md#states
    //= type=test
    //# Once a connection is closed, the server MUST NOT process any
    //# further bytes from it.
    //= spec/protocol.md#close
    //= type=test
    //# The server MUST accept CLOSE in every state that is not closed, reply
    //# 0x00, and then close the connection.
    //= spec/protocol.md#replies
    //= type=test
    //# After sending 0xFF the server MUST close the connection.
    //= spec/protocol.md#states
    //= type=test
    //# For each frame, the server MUST move to the next state, send the reply and carry out the effect that the state table gives for the current state, the frame's tag and its payload.
    #[test]
    fn core_follows_the_state_table(sequential 1..40 => Core);
}
