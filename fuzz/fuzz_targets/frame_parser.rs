//! Arbitrary bytes through the frame parser, in an arbitrary chunking and
//! with an optional lower payload limit; the invariants are listed at
//! `msglog::testkit::check::frame_parser`.
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
    if let Err(broken) = check::frame_parser(i.bytes, &i.sizes, i.limit) {
        panic!("{broken}");
    }
});
