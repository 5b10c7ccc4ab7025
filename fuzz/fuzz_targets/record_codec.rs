//! Arbitrary bytes cut into names, messages and lines, through the log
//! record codec; the invariants are listed at
//! `msglog::testkit::check::record_codec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msglog::testkit::check;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    cuts: Vec<u16>,
    bytes: &'a [u8],
}

fuzz_target!(|i: Input<'_>| {
    if let Err(broken) = check::record_codec(i.bytes, &i.cuts) {
        panic!("{broken}");
    }
});
