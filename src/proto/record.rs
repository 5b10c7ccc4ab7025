//! Log records: `[NAME]: MESSAGE\r\n`, escaped so that one message is one
//! line and no client can forge a record (spec: #record-format).
//!
//! Printable ASCII passes through unchanged (so records of plain text are
//! byte-identical to the original server's), and so does readable UTF-8
//! text. Control bytes become Unicode control pictures (CR is `␍`, LF `␊`);
//! every other byte that could break a line, hide text, or be mistaken for
//! an escape is written `␦HH` (U+2426 and two upper-case hex digits). The
//! result is always valid UTF-8.

use std::fmt;

use super::frame::MAX_PAYLOAD_LEN;

/// Introduces a byte written as two hex digits: U+2426 SYMBOL FOR SUBSTITUTE FORM TWO.
pub const ESCAPE: char = '\u{2426}';
const ESCAPE_UTF8: [u8; 3] = [0xE2, 0x90, 0xA6];
/// Control picture of byte 0x00; bytes 0x00..=0x1F map to U+2400..=U+241F.
const CONTROL_PICTURES: u32 = 0x2400;
/// Control picture of DEL (0x7F).
const DEL_PICTURE: char = '\u{2421}';

/// Which field a byte string is written to: names also escape `]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Message,
}

/// The longest record a server can write, CR LF included: every byte of a
/// 65,535-byte name and message escaped to five bytes (`␦HH`), plus `[`,
/// `]: ` and CR LF. A decoder rejects anything longer.
pub const MAX_TEXT_RECORD_LEN: usize = 1 + 5 * MAX_PAYLOAD_LEN + 3 + 5 * MAX_PAYLOAD_LEN + 2;

/// Characters that are valid text but unsafe to leave raw in a log: they
/// break lines for some readers (C0 and C1 controls, DEL, U+2028/9: Python's
/// `splitlines` splits at U+0085 and U+2028), or reorder or hide what a
/// person sees (bidirectional controls, zero-width characters, BOM). Every
/// log format escapes them: the text format byte by byte, JSON lines as
/// `\uXXXX`.
pub fn is_dangerous_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1F}'
        | '\u{7F}'..='\u{9F}'
        | '\u{61C}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}')
}

/// Characters outside ASCII that the text format escapes byte by byte: the
/// dangerous ones, and the control pictures and `␦`, which are its escapes.
fn char_needs_escape(c: char) -> bool {
    is_dangerous_char(c) || ('\u{2400}'..='\u{2426}').contains(&c)
}

fn push_hex_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&ESCAPE_UTF8);
    out.push(HEX[usize::from(byte >> 4)]);
    out.push(HEX[usize::from(byte & 0xF)]);
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// A byte written unchanged: printable ASCII, but `]` in a name.
fn is_plain(b: u8, field: Field) -> bool {
    (0x20..0x7F).contains(&b) && !(field == Field::Name && b == b']')
}

/// How many leading bytes are plain. Eight bytes at a time while no byte in
/// them needs a look (records are mostly plain text, and this scan was half
/// the server's own CPU time per message), then byte by byte.
fn plain_prefix(bytes: &[u8], field: Field) -> usize {
    // The byte scan decides; the words only let it start further on.
    let start = plain_words(bytes, field);
    bytes[start..]
        .iter()
        .position(|&b| !is_plain(b, field))
        .map_or(bytes.len(), |i| start + i)
}

/// How many leading bytes are in whole words of eight plain bytes.
fn plain_words(bytes: &[u8], field: Field) -> usize {
    let words = bytes
        .chunks_exact(8)
        .take_while(|chunk| {
            let word = u64::from_ne_bytes((*chunk).try_into().expect("chunks of eight"));
            word_is_plain(word, field)
        })
        .count();
    words * 8
}

/// Whether all eight bytes of `x` are plain, tested on the word at once
/// (exact, as "is there any such byte"): a byte below 0x20; a byte above
/// 0x7E (0x7F, or one with its top bit set); in a name, a byte equal to `]`.
#[inline]
fn word_is_plain(x: u64, field: Field) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Each test flags the top bit of a byte that fails it (and possibly of
    // bytes above one that does): zero means no byte fails.
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    let above_tilde = (x.wrapping_add(ONES) | x) & HIGHS;
    let bracket = match field {
        Field::Name => {
            let diff = x ^ (ONES * u64::from(b']'));
            diff.wrapping_sub(ONES) & !diff & HIGHS
        }
        Field::Message => 0,
    };
    below_space == 0 && above_tilde == 0 && bracket == 0
}

fn escape_into(out: &mut Vec<u8>, mut bytes: &[u8], field: Field) {
    while !bytes.is_empty() {
        // Fast path: the run of printable ASCII is copied as it is.
        //= spec/protocol.md#record-format
        //# Printable ASCII bytes 0x20 to 0x7E MUST be written unchanged, except `]` in a name.
        let plain = plain_prefix(bytes, field);
        out.extend_from_slice(&bytes[..plain]);
        bytes = &bytes[plain..];
        let Some(&b) = bytes.first() else { break };
        match b {
            //= spec/protocol.md#record-format
            //# Bytes 0x00 to 0x1F MUST be written as the Unicode control
            //# pictures U+2400 to U+241F, and 0x7F as U+2421.
            0x00..=0x1F => {
                push_char(
                    out,
                    char::from_u32(CONTROL_PICTURES + u32::from(b)).unwrap_or(ESCAPE),
                );
                bytes = &bytes[1..];
            }
            0x7F => {
                push_char(out, DEL_PICTURE);
                bytes = &bytes[1..];
            }
            //= spec/protocol.md#record-format
            //# In a name, the byte `]` (0x5D) MUST be written as `␦5D`.
            b']' => {
                push_hex_escape(out, b);
                bytes = &bytes[1..];
            }
            _ => {
                // Non-ASCII: copy a valid, harmless UTF-8 character; escape
                // anything else byte by byte.
                let width = utf8_width(b);
                let decoded = bytes
                    .get(..width)
                    .and_then(|seq| std::str::from_utf8(seq).ok())
                    .and_then(|s| s.chars().next());
                match decoded {
                    //= spec/protocol.md#record-format
                    //# Characters outside ASCII that are valid UTF-8 MUST be written unchanged, except the characters in the following list.
                    Some(c) if !char_needs_escape(c) => {
                        out.extend_from_slice(&bytes[..width]);
                        bytes = &bytes[width..];
                    }
                    //= spec/protocol.md#record-format
                    //# Bytes that are not part of valid UTF-8, and the bytes of the
                    //# characters listed above, MUST be written as `␦` followed by
                    //# two upper-case hexadecimal digits.
                    Some(_) => {
                        for &byte in &bytes[..width] {
                            push_hex_escape(out, byte);
                        }
                        bytes = &bytes[width..];
                    }
                    None => {
                        push_hex_escape(out, b);
                        bytes = &bytes[1..];
                    }
                }
            }
        }
    }
}

/// Length of the UTF-8 sequence a leading byte announces (1 for bytes that
/// cannot lead one; those are then escaped alone).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

/// Appends the record of one message to `out`.
//= spec/protocol.md#record-format
//# Each record MUST be `[`, the escaped name, `]: `, the escaped message,
//# and CR LF.
//= spec/protocol.md#record-format
//# A record MUST NOT contain the bytes CR or LF except for its final CR LF.
//= spec/protocol.md#record-format
//# Every record MUST be valid UTF-8.
pub fn encode_record(out: &mut Vec<u8>, name: &[u8], message: &[u8]) {
    out.reserve(name.len() + message.len() + 6);
    out.push(b'[');
    escape_into(out, name, Field::Name);
    out.extend_from_slice(b"]: ");
    escape_into(out, message, Field::Message);
    out.extend_from_slice(b"\r\n");
}

/// The record of one message as a new vector.
pub fn record(name: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + message.len() + 6);
    encode_record(&mut out, name, message);
    out
}

/// The name and message a record was made from.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Vec<u8>,
    pub message: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("message", &String::from_utf8_lossy(&self.message))
            .finish()
    }
}

/// Why a line is not a record this codec wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record does not end with CR LF")]
    MissingTerminator,
    #[error("record is not valid UTF-8")]
    NotUtf8,
    #[error("record does not start with `[`")]
    MissingOpenBracket,
    #[error("record has no `]: ` after the name")]
    MissingSeparator,
    #[error("record has a `␦` not followed by two upper-case hex digits")]
    BadEscape,
    #[error("record is not in the canonical form the encoder writes (an escape where none is needed, or a raw byte that must be escaped)")]
    NotCanonical,
    #[error(
        "record has an empty name, which no server writes (the protocol rejects an empty NAME)"
    )]
    EmptyName,
    #[error(
        "record has an empty message, which no server writes (the protocol rejects an empty MSG)"
    )]
    EmptyMessage,
    #[error("record is {len} bytes or more, longer than any record a server writes ({MAX_TEXT_RECORD_LEN} bytes)")]
    TooLong { len: usize },
}

fn unescape(field: &str) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            ESCAPE => {
                let hi = chars.next().and_then(upper_hex_digit);
                let lo = chars.next().and_then(upper_hex_digit);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(RecordError::BadEscape),
                }
            }
            '\u{2400}'..='\u{241F}' => out.push((u32::from(c) - CONTROL_PICTURES) as u8),
            DEL_PICTURE => out.push(0x7F),
            c => push_char(&mut out, c),
        }
    }
    Ok(out)
}

fn upper_hex_digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        'A'..='F' => Some(c as u8 - b'A' + 10),
        _ => None,
    }
}

/// Decodes one whole record, including its CR LF, back into the exact name
/// and message bytes. Only the canonical form `encode_record` writes is
/// accepted, so every record has exactly one reading.
pub fn decode_record(line: &[u8]) -> Result<Record, RecordError> {
    //= spec/protocol.md#record-format
    //# A decoder MUST reject a record whose name or message is empty, or that
    //# is longer than 655,356 bytes including its CR LF.
    if line.len() > MAX_TEXT_RECORD_LEN {
        return Err(RecordError::TooLong { len: line.len() });
    }
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(RecordError::MissingTerminator)?;
    let body = std::str::from_utf8(body).map_err(|_| RecordError::NotUtf8)?;
    let rest = body
        .strip_prefix('[')
        .ok_or(RecordError::MissingOpenBracket)?;
    // Names never hold a raw `]`, so the first one ends the name.
    let (name, message) = rest
        .split_once("]: ")
        .ok_or(RecordError::MissingSeparator)?;
    //= spec/protocol.md#record-format
    //# Decoding a record MUST give back exactly the name and message bytes it was made from.
    let record = Record {
        name: unescape(name)?,
        message: unescape(message)?,
    };
    //= spec/protocol.md#record-format
    //# A decoder MUST reject a line that is not exactly what the encoder writes for some name and message.
    if self::record(&record.name, &record.message) != line {
        return Err(RecordError::NotCanonical);
    }
    if record.name.is_empty() {
        return Err(RecordError::EmptyName);
    }
    if record.message.is_empty() {
        return Err(RecordError::EmptyMessage);
    }
    Ok(record)
}

/// Splits a log into records. Each item is one line with its CR LF; a last
/// piece without CR LF (a torn write) comes out as `Err(MissingTerminator)`.
pub fn records(log: &[u8]) -> impl Iterator<Item = Result<Record, RecordError>> + '_ {
    let mut rest = log;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // Records hold no CR or LF but their last two (#record-format).
        let line_len = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(rest.len(), |i| i + 2);
        let (line, tail) = rest.split_at(line_len);
        rest = tail;
        Some(decode_record(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    /// The word-at-a-time scan agrees with the byte-by-byte rule for every
    /// byte value at every position of runs up to three words long, in both
    /// fields, with plain bytes (including the edges 0x20, 0x7E, `\`) around.
    #[test]
    fn plain_prefix_agrees_with_the_byte_rule() {
        let naive = |bytes: &[u8], field| {
            bytes
                .iter()
                .position(|&b| !is_plain(b, field))
                .unwrap_or(bytes.len())
        };
        let filler = b" ~\\AZaz09[!/@`{|}";
        for field in [Field::Name, Field::Message] {
            for len in 0..=24 {
                let base: Vec<u8> = (0..len).map(|i| filler[i % filler.len()]).collect();
                assert_eq!(plain_prefix(&base, field), len);
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut bytes = base.clone();
                        bytes[at] = b;
                        assert_eq!(
                            plain_prefix(&bytes, field),
                            naive(&bytes, field),
                            "byte {b:#04x} at {at} of {len}, {field:?}"
                        );
                        // A second special byte after the first changes nothing.
                        if at + 1 < len {
                            bytes[len - 1] = 0x00;
                            assert_eq!(plain_prefix(&bytes, field), naive(&bytes, field));
                        }
                    }
                }
            }
        }
    }

    /// How far the word loop skips: a wrong answer there would only make
    /// the scan slower, so it is checked on its own.
    #[test]
    fn whole_plain_words_are_skipped_and_no_more() {
        let filler = b"Hello, world! ~ 09 [x] \\";
        for field in [Field::Name, Field::Message] {
            for len in 0..=40 {
                let base: Vec<u8> = (0..len)
                    .map(|i| match filler[i % filler.len()] {
                        b']' if field == Field::Name => b'_',
                        b => b,
                    })
                    .collect();
                assert_eq!(plain_words(&base, field), len / 8 * 8, "{field:?}");
                for at in 0..len {
                    for special in [0x00, b'\n', 0x7F, 0x80, 0xE2, 0xFF] {
                        let mut bytes = base.clone();
                        bytes[at] = special;
                        assert_eq!(plain_words(&bytes, field), at / 8 * 8);
                    }
                    if field == Field::Name {
                        let mut bytes = base.clone();
                        bytes[at] = b']';
                        assert_eq!(plain_words(&bytes, field), at / 8 * 8);
                    }
                }
            }
        }
    }

    /// The word test alone (where a wrong answer would only make the scan
    /// slower, never wrong): every byte value at every place of a plain word.
    #[test]
    fn the_word_test_agrees_with_the_byte_rule() {
        let filler = *b" ~\\AZa09";
        for field in [Field::Name, Field::Message] {
            for shift in 0..filler.len() {
                let base: [u8; 8] = std::array::from_fn(|i| filler[(i + shift) % filler.len()]);
                assert!(word_is_plain(u64::from_ne_bytes(base), field));
                for at in 0..8 {
                    for b in 0..=255u8 {
                        let mut bytes = base;
                        bytes[at] = b;
                        assert_eq!(
                            word_is_plain(u64::from_ne_bytes(bytes), field),
                            bytes.iter().all(|&b| is_plain(b, field)),
                            "byte {b:#04x} at {at} of {bytes:?}, {field:?}"
                        );
                    }
                }
            }
        }
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# Each record MUST be `[`, the escaped name, `]: `, the escaped message,
    //# and CR LF.
    #[test]
    fn plain_text_matches_the_original() {
        assert_eq!(
            record(b"MyTestCase", b"Hello!"),
            b"[MyTestCase]: Hello!\r\n"
        );
        assert_eq!(
            record(b"MyUser", b"C:\\dir [x]: y"),
            b"[MyUser]: C:\\dir [x]: y\r\n"
        );
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# Bytes 0x00 to 0x1F MUST be written as the Unicode control
    //# pictures U+2400 to U+241F, and 0x7F as U+2421.
    #[test]
    fn forged_line_stays_one_record() {
        let r = record(b"mallory", b"hi\r\n[admin]: transfer\x00\x7F");
        assert_eq!(
            String::from_utf8(r.clone()).unwrap(),
            "[mallory]: hi␍␊[admin]: transfer␀␡\r\n"
        );
        assert_eq!(records(&r).count(), 1);
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# In a name, the byte `]` (0x5D) MUST be written as `␦5D`.
    #[test]
    fn bracket_in_name_cannot_forge_the_separator() {
        let r = record(b"admin]: x", b"y");
        assert_eq!(
            String::from_utf8(r.clone()).unwrap(),
            "[admin␦5D: x]: y\r\n"
        );
        let back = decode_record(&r).unwrap();
        assert_eq!(back.name, b"admin]: x");
        assert_eq!(back.message, b"y");
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# Bytes that are not part of valid UTF-8, and the bytes of the
    //# characters listed above, MUST be written as `␦` followed by
    //# two upper-case hexadecimal digits.
    //= spec/protocol.md#record-format
    //= type=test
    //# Characters outside ASCII that are valid UTF-8 MUST be written unchanged, except the characters in the following list.
    #[test]
    fn binary_and_tricky_unicode_survive() {
        let msg = "héllo wörld ✓ 日本 \u{2028} \u{202E} ␦ ␍".as_bytes();
        let r = record(b"u", msg);
        let text = String::from_utf8(r.clone()).unwrap();
        assert!(text.contains("héllo wörld ✓ 日本 "));
        assert!(!text.contains('\u{2028}') && !text.contains('\u{202E}'));
        assert_eq!(decode_record(&r).unwrap().message, msg);

        let binary = [0xFFu8, 0xC3, 0x28, 0xE2, 0x82, 0x00, 0xF0, 0x9F, 0x98, 0x80];
        let r = record(b"u", &binary);
        assert_eq!(
            String::from_utf8(r.clone()).unwrap(),
            "[u]: ␦FF␦C3(␦E2␦82␀😀\r\n"
        );
        assert_eq!(decode_record(&r).unwrap().message, binary);
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# A decoder MUST reject a line that is not exactly what the encoder writes for some name and message.
    #[test]
    fn decoder_rejects_what_encoder_never_writes() {
        assert_eq!(
            decode_record(b"[a]: b"),
            Err(RecordError::MissingTerminator)
        );
        assert_eq!(
            decode_record(b"a]: b\r\n"),
            Err(RecordError::MissingOpenBracket)
        );
        assert_eq!(
            decode_record(b"[a] b\r\n"),
            Err(RecordError::MissingSeparator)
        );
        assert_eq!(
            decode_record("[a]: ␦4\r\n".as_bytes()),
            Err(RecordError::BadEscape)
        );
        assert_eq!(
            decode_record("[a]: ␦41\r\n".as_bytes()),
            Err(RecordError::NotCanonical)
        );
        assert_eq!(
            decode_record(b"[a]: \tb\r\n"),
            Err(RecordError::NotCanonical)
        );
        assert_eq!(decode_record(b"[a]: \xFF\r\n"), Err(RecordError::NotUtf8));
    }

    //= spec/protocol.md#record-format
    //= type=test
    //# A decoder MUST reject a record whose name or message is empty, or that
    //# is longer than 655,356 bytes including its CR LF.
    #[test]
    fn decoder_rejects_what_no_server_writes() {
        assert_eq!(decode_record(b"[]: x\r\n"), Err(RecordError::EmptyName));
        assert_eq!(decode_record(b"[a]: \r\n"), Err(RecordError::EmptyMessage));
        assert_eq!(decode_record(b"[]: \r\n"), Err(RecordError::EmptyName));
        // The longest record: a 65,535-byte name and message of bytes that
        // are escaped to five bytes each.
        let longest = record(&[0xFF; MAX_PAYLOAD_LEN], &[0xFF; MAX_PAYLOAD_LEN]);
        assert_eq!(longest.len(), MAX_TEXT_RECORD_LEN);
        assert_eq!(MAX_TEXT_RECORD_LEN, 655_356);
        assert!(decode_record(&longest).is_ok());
        // One byte more: a record no server writes, even if canonical.
        let longer = record(&[0xFF; MAX_PAYLOAD_LEN], &[0xFF; MAX_PAYLOAD_LEN + 1]);
        assert_eq!(
            decode_record(&longer),
            Err(RecordError::TooLong { len: longer.len() })
        );
        let ten_mb = record(b"a", &vec![b'x'; 10 << 20]);
        assert!(matches!(
            decode_record(&ten_mb),
            Err(RecordError::TooLong { .. })
        ));
    }

    #[test]
    fn dangerous_characters_are_escaped_and_the_escapes_themselves_too() {
        for c in [
            '\u{85}', '\u{2028}', '\u{2029}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}',
            '\u{1B}', '\u{7F}',
        ] {
            assert!(is_dangerous_char(c), "{c:?}");
        }
        for c in ['a', 'é', '✓', '\u{2400}', '\u{2426}', '\u{A0}'] {
            assert!(!is_dangerous_char(c), "{c:?}");
        }
        assert!(char_needs_escape('\u{2426}') && char_needs_escape('\u{2028}'));
    }

    #[test]
    fn torn_tail_is_reported() {
        let mut log = record(b"a", b"one");
        log.extend_from_slice(b"[a]: tw");
        let got: Vec<_> = records(&log).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(RecordError::MissingTerminator));
    }

    quickcheck! {
        //= spec/protocol.md#record-format
        //= type=test
        //# Decoding a record MUST give back exactly the name and message bytes it was made from.
        fn decode_inverts_encode(name: Vec<u8>, message: Vec<u8>) -> bool {
            let r = record(&name, &message);
            let want = if name.is_empty() {
                Err(RecordError::EmptyName)
            } else if message.is_empty() {
                Err(RecordError::EmptyMessage)
            } else {
                Ok(Record { name, message })
            };
            decode_record(&r) == want
        }

        //= spec/protocol.md#record-format
        //= type=test
        //# A record MUST NOT contain the bytes CR or LF except for its final CR LF.
        //= spec/protocol.md#record-format
        //= type=test
        //# Every record MUST be valid UTF-8.
        fn exactly_one_line_per_record(name: Vec<u8>, message: Vec<u8>) -> bool {
            let r = record(&name, &message);
            let body = &r[..r.len() - 2];
            r.ends_with(b"\r\n")
                && !body.contains(&b'\r')
                && !body.contains(&b'\n')
                && std::str::from_utf8(&r).is_ok()
                && records(&r).count() == 1
        }

        //= spec/protocol.md#record-format
        //= type=test
        //# Printable ASCII bytes 0x20 to 0x7E MUST be written unchanged, except `]` in a name.
        fn printable_ascii_is_unchanged(name: Vec<u8>, message: Vec<u8>) -> bool {
            // Fold arbitrary bytes onto printable ASCII (and `]` out of the
            // name) so no case is discarded.
            let printable = |b: &u8| b % 95 + 0x20;
            let name: Vec<u8> = name.iter().map(printable).map(|b| if b == b']' { b'[' } else { b }).collect();
            let message: Vec<u8> = message.iter().map(printable).collect();
            let mut expected = b"[".to_vec();
            expected.extend_from_slice(&name);
            expected.extend_from_slice(b"]: ");
            expected.extend_from_slice(&message);
            expected.extend_from_slice(b"\r\n");
            record(&name, &message) == expected
        }

        fn concatenated_records_split_back(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> bool {
            // A server writes no empty name or message.
            let pairs: Vec<_> = pairs.into_iter().filter(|(n, m)| !n.is_empty() && !m.is_empty()).collect();
            let mut log = Vec::new();
            for (n, m) in &pairs {
                encode_record(&mut log, n, m);
            }
            let back: Vec<_> = records(&log).map(|r| r.map(|r| (r.name, r.message))).collect();
            back == pairs.into_iter().map(Ok).collect::<Vec<_>>()
        }
    }
}
