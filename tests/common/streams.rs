//! Client streams for property tests: logins, frames valid and not, and
//! junk, with the interesting bytes made common.

use msglog::proto::Frame;
use proptest::collection::vec;
use proptest::prelude::*;

/// Payload bytes with the interesting ones (NUL, CR, LF, `]`, the escape
/// character's bytes, odd and even first bytes) made common.
pub fn payload() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => any::<u8>(),
        4 => 0x20..0x7Fu8,
        1 => prop::sample::select(&b"\0\r\n]\x7f\xe2\x90\xa6\xc2\x85"[..]),
    ];
    vec(byte, 0..24)
}

/// A client stream: usually a login, then frames (mostly valid MSGs, some
/// wrong or unknown ones, CLOSE) and sometimes raw junk bytes.
pub fn client_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => payload().prop_map(|p| Frame::Msg(&p).to_bytes().unwrap()),
        2 => (1..=3u8, payload()).prop_map(|(tag, p)| {
            let len = u16::try_from(p.len()).unwrap().to_le_bytes();
            [&[tag][..], &len, &p].concat()
        }),
        1 => Just(vec![4]),
        1 => any::<u8>().prop_map(|b| vec![b]),
        1 => vec(any::<u8>(), 0..6),
    ];
    (any::<bool>(), payload(), vec(piece, 0..12)).prop_map(|(login, name, pieces)| {
        let mut out = Vec::new();
        if login {
            let mut name = name;
            name.insert(0, b'u');
            out.extend(Frame::Name(&name).to_bytes().unwrap());
            out.extend(Frame::Pass(b"A").to_bytes().unwrap());
        }
        out.extend(pieces.concat());
        out
    })
}
