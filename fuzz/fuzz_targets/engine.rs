//! The session engine under every kind of event: client bytes in any
//! chunking, end of stream, time passing and timers firing, shutdown, a
//! client that reads only some replies, a log that is slow or fails. The
//! invariants are listed at `msglog::testkit::check::engine`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msglog::testkit::check;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    /// Each one a `check::Step`.
    script: Vec<u16>,
    limit: Option<u16>,
    bytes: &'a [u8],
}

fuzz_target!(|i: Input<'_>| {
    if let Err(broken) = check::engine(i.bytes, &i.script, i.limit) {
        panic!("{broken}");
    }
});
