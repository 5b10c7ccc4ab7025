//! Property tests over whole client streams: any chunking of the same bytes
//! gives the same replies, effects and records; and the fuzz targets'
//! invariants (`msglog::testkit::check`) hold on proptest's inputs too, so
//! `cargo test` runs them without a fuzzer.

mod common;

use common::streams::{client_stream, payload};
use common::watchdog::bounded;
use msglog::testkit::check;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Chunk sizes as `check::chunks` takes them (cycled; 0 is an empty read).
fn sizes() -> impl Strategy<Value = Vec<u16>> {
    prop_oneof![
        1 => Just(vec![1]),
        4 => vec(0..24u16, 0..6),
    ]
}

fn broken(b: check::Broken) -> TestCaseError {
    TestCaseError::fail(b.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/chunking.txt",
        ))),
        ..ProptestConfig::default()
    })]

    //= spec/protocol.md#states
    //= type=test
    //# Once a connection is closed, the server MUST NOT process any
    //# further bytes from it.
    //= spec/protocol.md#frame
    //= type=test
    //# The server MUST accept a frame split across any number of reads, down to one byte per read.
    //= spec/protocol.md#deviations
    //= type=test
    //# A frame that arrives in pieces MUST be processed as if it had arrived whole.
    #[test]
    fn any_chunking_gives_the_same_transcript(
        stream in client_stream(),
        a in sizes(),
        b in sizes(),
        limit in option::weighted(0.3, 0..40u16),
    ) {
        let input = stream.clone();
        let (a2, b2) = (a.clone(), b.clone());
        let (first, second, bytewise) =
            bounded(&stream, move || {
                (
                    check::run_session(&input, &a2, limit),
                    check::run_session(&input, &b2, limit),
                    check::run_session(&input, &[1], limit),
                )
            });
        // Replies, rules, effects (log, close) and records.
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(&first, &bytewise);
    }

    //= spec/protocol.md#replies
    //= type=test
    //# The server MUST answer each frame it processes with exactly one reply byte, 0x00 for success or 0xFF for failure.
    //= spec/protocol.md#acknowledgement
    //= type=test
    //# The server MUST process pipelined frames, sent without waiting for replies, in the order they arrived.
    #[test]
    fn session_invariants_hold(
        stream in client_stream(),
        sizes in sizes(),
        limit in option::weighted(0.3, 0..40u16),
    ) {
        let input = stream.clone();
        bounded(&stream, move || check::session(&input, &sizes, limit)).map_err(broken)?;
    }

    //= spec/protocol.md#frame
    //= type=test
    //# The length field MUST be read as an unsigned 16-bit integer in
    //# little-endian byte order.
    //= spec/protocol.md#limits
    //= type=test
    //# The input a server buffers for one connection MUST stay bounded, whatever the client sends.
    #[test]
    fn frame_parser_invariants_hold(
        bytes in prop_oneof![client_stream(), vec(any::<u8>(), 0..64)],
        sizes in sizes(),
        limit in option::weighted(0.3, 0..40u16),
    ) {
        let input = bytes.clone();
        bounded(&bytes, move || check::frame_parser(&input, &sizes, limit)).map_err(broken)?;
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# A record MUST NOT contain the bytes CR or LF except for its final CR LF.
    //= spec/protocol.md#record-format
    //= type=test
    //# Decoding a record MUST give back exactly the name and message bytes it was made from.
    #[test]
    fn record_codec_invariants_hold(
        pairs in vec((
            prop_oneof![payload(), any::<String>().prop_map(String::into_bytes)],
            prop_oneof![payload(), any::<String>().prop_map(String::into_bytes)],
        ), 0..4),
        line in prop_oneof![
            payload(),
            (payload(), payload(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
                |(n, m, at, b)| {
                    // A real record with one byte changed: near-misses of
                    // the canonical form.
                    let mut r = msglog::proto::record(&n, &m);
                    let i = at.index(r.len());
                    r[i] = b;
                    r
                }
            ),
        ],
    ) {
        let pairs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
        check::record_pairs(&pairs).map_err(broken)?;
        check::record_line(&line).map_err(broken)?;
    }

    #[test]
    fn record_codec_invariants_hold_on_cut_bytes(
        bytes in payload(),
        cuts in vec(0..12u16, 0..6),
    ) {
        check::record_codec(&bytes, &cuts).map_err(broken)?;
    }
}
