//! The session engine under every kind of event (reads in any chunking,
//! end of stream, time passing, timers, shutdown, a client that does not
//! read, a log that is slow or fails): the fuzz target `engine`'s
//! invariants (`msglog::testkit::check::engine`) on proptest's inputs, so
//! that `cargo test` runs them without a fuzzer.

mod common;

use common::streams::client_stream;
use common::watchdog::bounded;
use msglog::testkit::check::{self, Step};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Steps with the ones that move a connection along made common.
fn step() -> impl Strategy<Value = u16> {
    let step = prop_oneof![
        6 => (1..40usize).prop_map(Step::Read),
        1 => Just(Step::Eof),
        3 => prop_oneof![0..1_200u64, 2_900..3_100u64].prop_map(Step::Advance),
        1 => Just(Step::Fire),
        2 => Just(Step::FireAtDeadline),
        1 => Just(Step::Shutdown),
        4 => (0..6usize).prop_map(Step::ClientReads),
        4 => option::weighted(0.3, 0..4usize).prop_map(|failed_after| Step::LogDone { failed_after }),
        3 => any::<bool>().prop_map(|verified| Step::Verdict { verified }),
    ];
    step.prop_map(Step::encode)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/engine.txt",
        ))),
        ..ProptestConfig::default()
    })]

    //= spec/protocol.md#shutdown
    //= type=test
    //# A connection whose frame in progress does not complete within the shutdown timeout MUST get 0xFF and be closed.
    //= spec/protocol.md#acknowledgement
    //= type=test
    //# The server MUST send the 0x00 for a MSG only after the write(2) that
    //# appends its record to the log has returned.
    //= spec/protocol.md#backpressure
    //= type=test
    //# The server MUST NOT read more frames from a connection while
    //# replies to earlier frames wait to be sent on it.
    #[test]
    fn engine_invariants_hold_under_any_events(
        stream in client_stream(),
        script in vec(step(), 0..40),
        limit in option::weighted(0.2, 0..40u16),
    ) {
        let input = stream.clone();
        bounded(&stream, move || check::engine(&input, &script, limit))
            .map_err(|b| TestCaseError::fail(b.to_string()))?;
    }
}
