//! Arbitrary client byte streams through decoder + state machine + log,
//! against the spec's state table; the invariants are listed at
//! `msglog::testkit::check::session`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msglog::testkit::check;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    sizes: Vec<u16>,
    limit: Option<u16>,
    bytes: &'a [u8],
}

fuzz_target!(|i: Input<'_>| {
    if let Err(broken) = check::session(i.bytes, &i.sizes, i.limit) {
        panic!("{broken}");
    }
});
