//! Recovery policy (spec: #recovery), with no IO: given the length of a log,
//! its first bytes and its last bytes, decide whether it can be appended to
//! as it is, whether it ends with a torn record to cut off, or why it must be
//! refused.
//!
//! Recovery is the one place the server deletes bytes, so it cuts only a tail
//! it can prove is the start of a record the server's own encoder writes. The
//! proof is a witness: from the tail it builds a name and a message (and for
//! JSON lines a timestamp and a peer address) and checks that the real
//! encoder's record for them starts with exactly the tail's bytes. Building
//! the witness may be clumsy; the check cannot be fooled by that, only made
//! to refuse.

use std::fmt;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::frame::MAX_PAYLOAD_LEN;
use super::jsonl::{decode_json_record, encode_json_line, encode_json_record, JsonContext};
use super::record::record;
use super::LogFormat;

/// How many bytes from the start of a log recovery needs: its first line, if
/// it is a record of either format (JSON-lines records are the longer).
pub const HEAD_WINDOW: usize = LogFormat::Jsonl.max_record_len();
/// How many bytes from the end of a log recovery needs: a tail shorter than a
/// record and the whole last line before it.
pub const END_WINDOW: usize = 2 * HEAD_WINDOW;

/// What recovery looks at of a log file.
#[derive(Debug, Clone, Copy)]
pub struct LogEnds<'a> {
    /// Length of the whole file.
    pub len: u64,
    /// Its first `min(len, HEAD_WINDOW)` bytes.
    pub head: &'a [u8],
    /// Its last `min(len, END_WINDOW)` bytes.
    pub end: &'a [u8],
}

impl<'a> LogEnds<'a> {
    /// The ends of a log held whole in memory.
    pub fn of(log: &'a [u8]) -> LogEnds<'a> {
        LogEnds {
            len: log.len() as u64,
            head: &log[..log.len().min(HEAD_WINDOW)],
            end: &log[log.len() - log.len().min(END_WINDOW)..],
        }
    }
}

/// A torn record to cut off: the last `len` bytes, from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub len: u64,
}

/// A few bytes of a log, shown escaped in a diagnostic.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt {
    bytes: Vec<u8>,
    /// How many bytes follow those shown.
    more: usize,
}

impl Excerpt {
    const LEN: usize = 24;

    /// The bytes of `bytes` from `at` on.
    pub fn at(bytes: &[u8], at: usize) -> Excerpt {
        let rest = bytes.get(at..).unwrap_or_default();
        let shown = rest.len().min(Self::LEN);
        Excerpt {
            bytes: rest[..shown].to_vec(),
            more: rest.len() - shown,
        }
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes.is_empty() {
            return write!(f, "the end of the file");
        }
        write!(f, "\"{}\"", self.bytes.escape_ascii())?;
        if self.more > 0 {
            write!(f, " and {} more bytes", self.more)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a log must not be opened. Offsets are from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it is a {found} log, and the server is configured to write {configured} records; one file never holds both")]
    FormatMismatch {
        found: LogFormat,
        configured: LogFormat,
    },
    #[error("it is not a log of either format: its first line does not fit a text record (`[NAME]: MESSAGE` CR LF) or a JSON-lines record at offset {offset}, where it has {found}")]
    NotALog { offset: u64, found: Excerpt },
    #[error("its last complete line (at offset {offset}: {found}) is not a {format} record, so the bytes after it cannot be proven to be a torn record")]
    LastLineNotARecord {
        format: LogFormat,
        offset: u64,
        found: Excerpt,
    },
    #[error("the {len} bytes from offset {offset} to its end have no line end, and a torn {format} record is shorter than {max} bytes")]
    TailTooLong {
        format: LogFormat,
        offset: u64,
        len: u64,
        max: usize,
    },
    #[error("it ends with {len} bytes after its last line end, from offset {offset}, that are not the start of a record msglog writes: at offset {at} it has {found}")]
    TailNotARecord {
        format: LogFormat,
        offset: u64,
        len: u64,
        at: u64,
        found: Excerpt,
    },
}

/// Decides what to do with an existing log before appending to it.
/// `Ok(None)`: append as it is. `Ok(Some(tail))`: cut that torn record off
/// first. `Err`: leave the file alone.
pub fn plan(format: LogFormat, log: LogEnds<'_>) -> Result<Option<TornTail>, Refusal> {
    if log.len == 0 {
        return Ok(None);
    }
    //= spec/protocol.md#recovery
    //# The server MUST refuse to open a non-empty log whose first line is
    //# neither a record line nor the start of a record, in either format.
    let found = first_line_format(log.head).map_err(|at| Refusal::NotALog {
        offset: at as u64,
        found: Excerpt::at(log.head, at),
    })?;
    //= spec/protocol.md#recovery
    //# The server MUST refuse to open a log whose first line is a record line
    //# or the start of a record of the other format than the configured one,
    //# and say which format the log has.
    if found != format {
        return Err(Refusal::FormatMismatch {
            found,
            configured: format,
        });
    }
    let line_end = format.terminator();
    let max = format.max_record_len();
    // Offset in the file of `log.end[0]`.
    let base = log.len - log.end.len() as u64;
    let whole = base == 0;
    let tail_at = match rfind(log.end, line_end) {
        Some(i) => i + line_end.len(),
        None if whole => 0,
        None => {
            return Err(Refusal::TailTooLong {
                format,
                offset: base,
                len: log.end.len() as u64,
                max,
            })
        }
    };
    let tail = &log.end[tail_at..];
    let tail_offset = base + tail_at as u64;
    if tail.len() >= max {
        return Err(Refusal::TailTooLong {
            format,
            offset: tail_offset,
            len: tail.len() as u64,
            max,
        });
    }
    if tail_at > 0 {
        let before = &log.end[..tail_at - line_end.len()];
        let line_at = match rfind(before, line_end) {
            Some(i) => i + line_end.len(),
            // The line began before the window: longer than any record.
            None if !whole => {
                return Err(Refusal::LastLineNotARecord {
                    format,
                    offset: base,
                    found: Excerpt::at(log.end, 0),
                })
            }
            None => 0,
        };
        //= spec/protocol.md#recovery
        //# The server MUST refuse to open a log whose last line is not a record
        //# line of the configured format.
        if !is_record_line(format, &log.end[line_at..tail_at]) {
            return Err(Refusal::LastLineNotARecord {
                format,
                offset: base + line_at as u64,
                found: Excerpt::at(log.end, line_at),
            });
        }
    }
    if tail.is_empty() {
        return Ok(None);
    }
    //= spec/protocol.md#recovery
    //# The server MUST refuse to open a log whose tail is neither empty nor a
    //# torn record.
    if !is_record_prefix(format, tail) {
        let fits = longest_record_prefix(format, tail);
        return Err(Refusal::TailNotARecord {
            format,
            offset: tail_offset,
            len: tail.len() as u64,
            at: tail_offset + fits as u64,
            found: Excerpt::at(tail, fits),
        });
    }
    Ok(Some(TornTail {
        offset: tail_offset,
        len: tail.len() as u64,
    }))
}

/// The format of a log, from its first line: a record line of one format,
/// or, if the log has no line end yet, the start of a record. `None` for
/// anything else, including an empty log.
pub fn detect(log: &[u8]) -> Option<LogFormat> {
    first_line_format(log).ok()
}

/// The format whose record line (or record start) the log begins with, or
/// the offset where the first line stops fitting either format.
fn first_line_format(head: &[u8]) -> Result<LogFormat, usize> {
    let format = match head.first() {
        Some(b'[') => LogFormat::Text,
        Some(b'{') => LogFormat::Jsonl,
        _ => return Err(0),
    };
    let line_end = format.terminator();
    let (line, body) = match find(head, line_end) {
        Some(i) => (&head[..i + line_end.len()], &head[..i]),
        None => (head, head),
    };
    let fits = if line.ends_with(line_end) {
        is_record_line(format, line)
    } else {
        is_record_prefix(format, line)
    };
    if fits {
        Ok(format)
    } else {
        Err(longest_record_prefix(format, body))
    }
}

/// Whether `line` (with its line end) is a record line: for text, what msglog
/// or the reference server writes (`[`, a name of at least one byte, `]: `,
/// anything, CR LF: the reference does not escape, so `[a]b]: x]: y` is one);
/// for JSON lines, a line the reader decodes.
pub fn is_record_line(format: LogFormat, line: &[u8]) -> bool {
    if line.len() > format.max_record_len() {
        return false;
    }
    match format {
        LogFormat::Text => {
            line.starts_with(b"[")
                && line.ends_with(b"\r\n")
                && find(&line[1..line.len() - 2], b"]: ").is_some_and(|i| i > 0)
        }
        // A CR before the LF would make a file of mixed line ends.
        LogFormat::Jsonl => !line.ends_with(b"\r\n") && decode_json_record(line).is_ok(),
    }
}

/// Whether `bytes` are the start of (or all of) a record this server's
/// encoder writes for a name and message the protocol accepts, shorter than
/// the longest record.
pub fn is_record_prefix(format: LogFormat, bytes: &[u8]) -> bool {
    if bytes.len() >= format.max_record_len() {
        return false;
    }
    match format {
        LogFormat::Text => text::is_prefix(bytes),
        LogFormat::Jsonl => jsonl::is_prefix(bytes),
    }
}

/// The length of the longest start of `bytes` that is the start of a record:
/// where the first byte that cannot continue one is.
fn longest_record_prefix(format: LogFormat, bytes: &[u8]) -> usize {
    // Starts of a record are closed under taking starts, so bisect.
    let (mut fits, mut misfits) = (0, bytes.len());
    if is_record_prefix(format, bytes) {
        return bytes.len();
    }
    while misfits - fits > 1 {
        let mid = fits + (misfits - fits) / 2;
        if is_record_prefix(format, &bytes[..mid]) {
            fits = mid;
        } else {
            misfits = mid;
        }
    }
    fits
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A name the protocol accepts: non-empty, not starting with 0x00.
fn valid_name(name: &[u8]) -> bool {
    name.first().is_some_and(|&b| b != 0) && name.len() <= MAX_PAYLOAD_LEN
}

/// A message the protocol accepts: non-empty.
fn valid_message(message: &[u8]) -> bool {
    !message.is_empty() && message.len() <= MAX_PAYLOAD_LEN
}

/// Completions of a partial UTF-8 sequence into whole characters: enough of
/// them that, whatever characters an encoder writes unescaped, one of these
/// is among them if any character starting with `partial` is.
fn complete_utf8(partial: &[u8]) -> Vec<char> {
    const CONTINUATIONS: [u8; 4] = [0x80, 0x90, 0xA0, 0xBF];
    let width = match partial.first() {
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return Vec::new(),
    };
    let mut found = Vec::new();
    if partial.len() >= width {
        return found;
    }
    let missing = width - partial.len();
    let combinations = CONTINUATIONS.len().pow(missing as u32);
    for mut n in 0..combinations {
        let mut bytes = partial.to_vec();
        for _ in 0..missing {
            bytes.push(CONTINUATIONS[n % CONTINUATIONS.len()]);
            n /= CONTINUATIONS.len();
        }
        if let Some(c) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.chars().next())
        {
            found.push(c);
        }
    }
    found
}

/// Whether `bytes` could be the start of a UTF-8 character: valid so far,
/// and fewer bytes than the character needs.
fn is_partial_utf8(bytes: &[u8]) -> bool {
    matches!(std::str::from_utf8(bytes), Err(e) if e.valid_up_to() == 0 && e.error_len().is_none())
}

/// The text format (spec: #record-format): `[NAME]: MESSAGE` CR LF.
mod text {
    use super::*;

    /// U+2426 `␦`: an escaped byte follows as two upper-case hex digits.
    const ESCAPE: char = '\u{2426}';
    /// Control pictures U+2400..=U+241F stand for bytes 0x00..=0x1F.
    const CONTROL_PICTURES: u32 = 0x2400;
    /// U+2421 stands for 0x7F.
    const DEL_PICTURE: char = '\u{2421}';

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Field {
        Name,
        Message,
    }

    /// How decoding a field of a record start ended.
    enum FieldEnd<'a> {
        /// At the byte that ends the field (`]` of a name, CR of a
        /// message), at this index of the input.
        Closed(usize),
        /// At the end of the input, inside the field; `partial` is an
        /// unfinished character or escape (empty if none).
        Open { partial: &'a [u8] },
        /// At a byte no encoder writes there.
        Invalid,
    }

    /// Decodes an escaped field into `out`, up to the end of the field or
    /// of the input.
    fn decode_field<'a>(input: &'a [u8], field: Field, out: &mut Vec<u8>) -> FieldEnd<'a> {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match b {
                b']' if field == Field::Name => return FieldEnd::Closed(i),
                b'\r' if field == Field::Message => return FieldEnd::Closed(i),
                0x20..=0x7E => {
                    out.push(b);
                    i += 1;
                }
                0x00..=0x1F | 0x7F => return FieldEnd::Invalid,
                _ => {
                    let width = match b {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return FieldEnd::Invalid,
                    };
                    let rest = &input[i..];
                    let Some(seq) = rest.get(..width) else {
                        return if is_partial_utf8(rest) {
                            FieldEnd::Open { partial: rest }
                        } else {
                            FieldEnd::Invalid
                        };
                    };
                    let Some(c) = std::str::from_utf8(seq).ok().and_then(|s| s.chars().next())
                    else {
                        return FieldEnd::Invalid;
                    };
                    match c {
                        ESCAPE => {
                            let digits = &rest[width..rest.len().min(width + 2)];
                            if !digits
                                .iter()
                                .all(|d| matches!(d, b'0'..=b'9' | b'A'..=b'F'))
                            {
                                return FieldEnd::Invalid;
                            }
                            if digits.len() < 2 {
                                return FieldEnd::Open { partial: rest };
                            }
                            out.push(hex(digits[0]) << 4 | hex(digits[1]));
                            i += width + 2;
                            continue;
                        }
                        '\u{2400}'..='\u{241F}' => {
                            out.push((u32::from(c) - CONTROL_PICTURES) as u8)
                        }
                        DEL_PICTURE => out.push(0x7F),
                        _ => out.extend_from_slice(seq),
                    }
                    i += width;
                }
            }
        }
        FieldEnd::Open { partial: &[] }
    }

    fn hex(digit: u8) -> u8 {
        match digit {
            b'0'..=b'9' => digit - b'0',
            _ => digit - b'A' + 10,
        }
    }

    /// Byte strings that an unfinished token `partial` could stand for,
    /// enough that one fits wherever any does: the escaped bytes `␦`
    /// (`␦H`) can begin, a control picture, and whole characters.
    fn completions(partial: &[u8]) -> Vec<Vec<u8>> {
        if partial.is_empty() {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        let mut escape = [0; 4];
        let escape = ESCAPE.encode_utf8(&mut escape).as_bytes();
        if partial.len() <= escape.len() && escape.starts_with(partial) {
            // Not part of any UTF-8 character, 0xFF is escaped wherever it is.
            out.push(vec![0xFF]);
        } else if partial.len() == escape.len() + 1 && partial.starts_with(escape) {
            let high = hex(partial[escape.len()]) << 4;
            out.extend((0..16).map(|low| vec![high | low]));
        }
        let mut picture = [0; 4];
        if '\u{2401}'
            .encode_utf8(&mut picture)
            .as_bytes()
            .starts_with(partial)
        {
            out.push(vec![0x01]);
        }
        for c in complete_utf8(partial) {
            let mut buf = [0; 4];
            out.push(c.encode_utf8(&mut buf).as_bytes().to_vec());
        }
        out
    }

    /// `decoded` followed by each completion of `partial`; a placeholder
    /// byte if the field is still empty.
    fn witnesses(decoded: &[u8], partial: &[u8]) -> Vec<Vec<u8>> {
        completions(partial)
            .into_iter()
            .map(|rest| {
                let mut w = decoded.to_vec();
                w.extend_from_slice(&rest);
                if w.is_empty() {
                    w.push(b'x');
                }
                w
            })
            .collect()
    }

    fn fits(start: &[u8], name: &[u8], message: &[u8]) -> bool {
        valid_name(name) && valid_message(message) && record(name, message).starts_with(start)
    }

    pub(super) fn is_prefix(start: &[u8]) -> bool {
        let Some(after_bracket) = start.strip_prefix(b"[") else {
            return start.is_empty();
        };
        let mut name = Vec::new();
        let name_end = match decode_field(after_bracket, Field::Name, &mut name) {
            FieldEnd::Invalid => return false,
            FieldEnd::Open { partial } => {
                return witnesses(&name, partial)
                    .iter()
                    .any(|n| fits(start, n, b"x"))
            }
            FieldEnd::Closed(i) => i,
        };
        let separator: &[u8] = b"]: ";
        let after_name = &after_bracket[name_end..];
        let Some(message_bytes) = after_name.strip_prefix(separator) else {
            return separator.starts_with(after_name) && fits(start, &name, b"x");
        };
        let mut message = Vec::new();
        match decode_field(message_bytes, Field::Message, &mut message) {
            FieldEnd::Invalid => false,
            FieldEnd::Open { partial } => witnesses(&message, partial)
                .iter()
                .any(|m| fits(start, &name, m)),
            // CR, or CR LF: then nothing may follow.
            FieldEnd::Closed(cr) => {
                b"\r\n".starts_with(&message_bytes[cr..]) && fits(start, &name, &message)
            }
        }
    }
}

/// The JSON-lines format (spec: #log-format-jsonl):
/// `{"ts":…,"peer":…,"name":…,"message":…}` LF, each of name and message
/// optionally base64 with a `…_encoding` flag after it.
mod jsonl {
    use super::*;

    /// A JSON string of a record start, decoded.
    struct JsonStr<'a> {
        text: String,
        /// Its closing quote is in the input.
        closed: bool,
        /// An unfinished escape or character at the end of the input.
        partial: &'a [u8],
        /// Input bytes up to the closing quote (or all of them).
        len: usize,
    }

    /// Decodes the contents of a JSON string up to its closing quote or the
    /// end of the input; `None` if it has something JSON does not allow or
    /// an encoder never writes (a lone surrogate).
    fn scan_string(input: &[u8]) -> Option<JsonStr<'_>> {
        let mut text = String::new();
        let mut i = 0;
        let open = |text, i: usize| {
            Some(JsonStr {
                text,
                closed: false,
                partial: &input[i..],
                len: input.len(),
            })
        };
        while let Some(&b) = input.get(i) {
            match b {
                b'"' => {
                    return Some(JsonStr {
                        text,
                        closed: true,
                        partial: &[],
                        len: i,
                    })
                }
                b'\\' => {
                    let Some(&kind) = input.get(i + 1) else {
                        return open(text, i);
                    };
                    let simple = match kind {
                        b'"' => Some('"'),
                        b'\\' => Some('\\'),
                        b'/' => Some('/'),
                        b'b' => Some('\u{8}'),
                        b'f' => Some('\u{C}'),
                        b'n' => Some('\n'),
                        b'r' => Some('\r'),
                        b't' => Some('\t'),
                        b'u' => None,
                        _ => return None,
                    };
                    if let Some(c) = simple {
                        text.push(c);
                        i += 2;
                        continue;
                    }
                    let digits = &input[i + 2..input.len().min(i + 6)];
                    if !digits.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    if digits.len() < 4 {
                        return open(text, i);
                    }
                    let code = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
                    text.push(char::from_u32(code)?);
                    i += 6;
                }
                0x00..=0x1F => return None,
                _ => {
                    let width = match b {
                        0x20..=0x7F => 1,
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return None,
                    };
                    let rest = &input[i..];
                    let Some(seq) = rest.get(..width) else {
                        return if is_partial_utf8(rest) {
                            open(text, i)
                        } else {
                            None
                        };
                    };
                    text.push_str(std::str::from_utf8(seq).ok()?);
                    i += width;
                }
            }
        }
        open(text, i)
    }

    /// Every character of the Basic Multilingual Plane the encoder writes
    /// escaped in a JSON string, with its escape: asked of the encoder
    /// itself, once, so that whatever it escapes (and in whichever case),
    /// the start of an escape is recognised.
    fn escapes() -> &'static [(char, Vec<u8>)] {
        static ESCAPES: std::sync::OnceLock<Vec<(char, Vec<u8>)>> = std::sync::OnceLock::new();
        ESCAPES.get_or_init(|| {
            const BEFORE: &[u8] = b"{\"name\":\"";
            const AFTER: &[u8] = b"\",\"message\":\"x\"}\n";
            let mut found = Vec::new();
            let mut line = Vec::new();
            for c in (0..=0xFFFF).filter_map(char::from_u32) {
                line.clear();
                let mut buf = [0; 4];
                encode_json_line(&mut line, None, c.encode_utf8(&mut buf).as_bytes(), b"x");
                let written = line
                    .strip_prefix(BEFORE)
                    .and_then(|rest| rest.strip_suffix(AFTER));
                if let Some(written) = written.filter(|w| w.starts_with(b"\\")) {
                    found.push((c, written.to_vec()));
                }
            }
            found
        })
    }

    /// Characters an unfinished escape or character `partial` could stand
    /// for: every character the encoder escapes with an escape that starts
    /// so, or whole characters for a partial UTF-8 sequence.
    fn completions(partial: &[u8]) -> Vec<char> {
        if partial.first() != Some(&b'\\') {
            return complete_utf8(partial);
        }
        escapes()
            .iter()
            .filter(|(_, escape)| escape.starts_with(partial))
            .map(|&(c, _)| c)
            .collect()
    }

    /// Values a plain JSON string field could have: its text followed by
    /// each completion of its unfinished end; a placeholder if still empty
    /// and open.
    fn plain_witnesses(s: &JsonStr<'_>) -> Vec<Vec<u8>> {
        if s.closed {
            return vec![s.text.clone().into_bytes()];
        }
        let ends: Vec<Option<char>> = if s.partial.is_empty() {
            vec![None]
        } else {
            completions(s.partial).into_iter().map(Some).collect()
        };
        ends.into_iter()
            .map(|end| {
                let mut w = s.text.clone();
                w.extend(end);
                if w.is_empty() {
                    w.push('x');
                }
                w.into_bytes()
            })
            .collect()
    }

    /// The bytes a base64 field could hold; `None` if the text cannot be
    /// (the start of) base64 as the encoder writes it.
    fn base64_witness(s: &JsonStr<'_>) -> Option<Vec<u8>> {
        let text = s.text.as_str();
        if !s.partial.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return None;
        }
        if s.closed {
            return BASE64.decode(text).ok();
        }
        // Whole groups, then an unfinished one: fill it (a padded group
        // ends the string; an unpadded one can be followed by more), and
        // add 0xFF so the bytes are not UTF-8, as base64 fields never are.
        let whole = text.len() / 4 * 4;
        let (groups, rest) = text.split_at(whole);
        let padded = groups.ends_with('=') || rest.contains('=');
        let mut filled = groups.to_owned();
        filled.push_str(rest);
        let fill = if padded { '=' } else { 'A' };
        while filled.len() % 4 != 0 {
            filled.push(fill);
        }
        let mut bytes = BASE64.decode(filled).ok()?;
        if !padded {
            bytes.push(0xFF);
        }
        Some(bytes)
    }

    /// Whether a timestamp is one the server writes: RFC 3339 in UTC, as
    /// `JsonContext::timestamp_of` formats it.
    fn is_timestamp(text: &str) -> bool {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| JsonContext::timestamp_of(t.into()) == text)
    }

    /// Whether some timestamp the server writes starts with `text`. Filling
    /// in from these patterns finds one whenever there is one: a month
    /// digit is completed by 1, a day digit by 1 or 0 (for the 30th).
    pub(super) fn is_timestamp_start(text: &str) -> bool {
        const PATTERNS: [&str; 4] = [
            "2000-01-01T00:00:00Z",
            "2000-01-10T00:00:00Z",
            "2000-01-01T00:00:00.1Z",
            "2000-01-10T00:00:00.1Z",
        ];
        text.len() <= 30
            && (is_timestamp(text)
                || [format!("{text}Z"), format!("{text}1Z")]
                    .iter()
                    .any(|t| is_timestamp(t))
                || PATTERNS.iter().any(|p| {
                    p.get(text.len()..)
                        .is_some_and(|rest| is_timestamp(&format!("{text}{rest}")))
                }))
    }

    /// Whether a peer address is one the server writes: a socket address as
    /// Rust displays it.
    fn is_peer(text: &str) -> bool {
        text.parse::<SocketAddr>()
            .is_ok_and(|a| a.to_string() == text)
    }

    /// Whether some peer address the server writes starts with `text`: one
    /// of these completions makes it whole. An IPv4 address needs its
    /// missing octets and a port. An IPv6 one needs its missing groups
    /// (groups of 1, with or without a `::` among them, which also gives a
    /// zero run already written out the longer run it needs after it), or
    /// the rest of `::ffff:a.b.c.d`; then a scope and a port.
    pub(super) fn is_peer_start(text: &str) -> bool {
        const V4_OCTETS: [&str; 7] = ["", "0", ".0", "0.0", ".0.0", "0.0.0", ".0.0.0"];
        const MAPPED: [&str; 6] = [
            "ffff:1.1.1.1",
            "fff:1.1.1.1",
            "ff:1.1.1.1",
            "f:1.1.1.1",
            ":1.1.1.1",
            "1.1.1.1",
        ];
        if text.is_empty() {
            return true;
        }
        if text.len() > 64 {
            return false;
        }
        let fits = |rest: &str| is_peer(&format!("{text}{rest}"));
        if !text.starts_with('[') {
            return V4_OCTETS.iter().any(|octets| {
                [":1", "1", ""]
                    .iter()
                    .any(|port| fits(&format!("{octets}{port}")))
            });
        }
        if text.contains(']') {
            return ["", "1", ":1"].iter().any(|rest| fits(rest));
        }
        if text.contains('%') {
            return ["]:1", "1]:1"].iter().any(|rest| fits(rest));
        }
        let ones = |n: usize| vec!["1"; n].join(":");
        let mut groups: Vec<String> = Vec::new();
        for before in 0..8 {
            let explicit = ":1".repeat(before);
            groups.push(explicit.clone());
            for after in 0..7 {
                groups.push(format!("{explicit}::{}", ones(after)));
            }
        }
        let without_colon: Vec<String> = groups
            .iter()
            .filter_map(|g| g.strip_prefix(':').map(str::to_owned))
            .collect();
        groups.extend(without_colon);
        groups.extend(MAPPED.iter().chain(&V4_OCTETS).map(|g| g.to_string()));
        groups
            .iter()
            .any(|g| fits(&format!("{g}]:1")) || fits(&format!("{g}%1]:1")))
    }

    /// Whether `start` begins a record in the layout where name and message
    /// are base64 (with their flags) or plain as given.
    fn is_prefix_in_layout(start: &[u8], name_base64: bool, message_base64: bool) -> bool {
        let after_name: &[u8] = if name_base64 {
            b"\",\"name_encoding\":\"base64\",\"message\":\""
        } else {
            b"\",\"message\":\""
        };
        let after_message: &[u8] = if message_base64 {
            b"\",\"message_encoding\":\"base64\"}\n"
        } else {
            b"\"}\n"
        };
        // Literal parts, with the four strings (ts, peer, name, message)
        // between them.
        let literals: [&[u8]; 5] = [
            b"{\"ts\":\"",
            b"\",\"peer\":\"",
            b"\",\"name\":\"",
            after_name,
            after_message,
        ];
        let mut rest = start;
        let mut strings: Vec<JsonStr<'_>> = Vec::new();
        for (i, literal) in literals.iter().enumerate() {
            if rest.len() < literal.len() {
                if !literal.starts_with(rest) {
                    return false;
                }
                rest = &[];
                break;
            }
            let Some(after) = rest.strip_prefix(*literal) else {
                return false;
            };
            rest = after;
            if i == literals.len() - 1 {
                break;
            }
            let Some(s) = scan_string(rest) else {
                return false;
            };
            rest = &rest[s.len..];
            let closed = s.closed;
            strings.push(s);
            if !closed {
                break;
            }
        }
        if !rest.is_empty() {
            return false;
        }
        let mut strings = strings.into_iter();
        let mut context = JsonContext {
            timestamp: "2000-01-01T00:00:00Z".into(),
            peer: "127.0.0.1:1".into(),
        };
        if let Some(ts) = strings.next() {
            let known = if ts.closed {
                is_timestamp(&ts.text)
            } else {
                is_timestamp_start(&ts.text)
            };
            if !known || !ts.partial.is_empty() {
                return false;
            }
            context.timestamp = ts.text;
        }
        if let Some(peer) = strings.next() {
            let known = if peer.closed {
                is_peer(&peer.text)
            } else {
                is_peer_start(&peer.text)
            };
            if !known || !peer.partial.is_empty() {
                return false;
            }
            context.peer = peer.text;
        }
        let field = |s: Option<JsonStr<'_>>, base64: bool| -> Option<Vec<Vec<u8>>> {
            match s {
                None => Some(vec![b"x".to_vec()]),
                Some(s) if base64 => base64_witness(&s).map(|w| vec![w]),
                Some(s) => Some(plain_witnesses(&s)),
            }
        };
        let (Some(names), Some(messages)) = (
            field(strings.next(), name_base64),
            field(strings.next(), message_base64),
        ) else {
            return false;
        };
        names.iter().any(|name| {
            messages.iter().any(|message| {
                if !valid_name(name) || !valid_message(message) {
                    return false;
                }
                let mut encoded = Vec::new();
                encode_json_record(&mut encoded, &context, name, message);
                encoded.starts_with(start)
            })
        })
    }

    pub(super) fn is_prefix(start: &[u8]) -> bool {
        start.is_empty()
            || [(false, false), (false, true), (true, false), (true, true)]
                .into_iter()
                .any(|(name, message)| is_prefix_in_layout(start, name, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    const TEXT: LogFormat = LogFormat::Text;
    const JSONL: LogFormat = LogFormat::Jsonl;

    fn plan_of(format: LogFormat, log: &[u8]) -> Result<Option<TornTail>, Refusal> {
        plan(format, LogEnds::of(log))
    }

    fn context() -> JsonContext {
        JsonContext {
            timestamp: "2026-11-27T12:00:00.5Z".into(),
            peer: "[::1]:4000".into(),
        }
    }

    fn json(name: &[u8], message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_json_record(&mut out, &context(), name, message);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn empty_and_clean_logs_are_kept() {
        assert_eq!(plan_of(TEXT, b""), Ok(None));
        assert_eq!(plan_of(JSONL, b""), Ok(None));
        let text = cat(&[&record(b"a", b"one"), &record(b"b", b"two")]);
        assert_eq!(plan_of(TEXT, &text), Ok(None));
        let jsonl = cat(&[&json(b"a", b"one"), &json(b"b", &[0xFF])]);
        assert_eq!(plan_of(JSONL, &jsonl), Ok(None));
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# The server MUST refuse to open a log whose tail is neither empty nor a
    //# torn record.
    #[test]
    fn a_torn_record_is_cut_and_nothing_else() {
        let whole = record(b"a", "tw\u{2028}o\x01".as_bytes());
        let log = cat(&[&record(b"a", b"one"), &whole[..9]]);
        assert_eq!(
            plan_of(TEXT, &log),
            Ok(Some(TornTail { offset: 10, len: 9 }))
        );
        // CR written, LF not: still the start of a record.
        let log = cat(&[&record(b"a", b"one"), &whole[..whole.len() - 1]]);
        assert_eq!(
            plan_of(TEXT, &log),
            Ok(Some(TornTail {
                offset: 10,
                len: whole.len() as u64 - 1
            }))
        );
        // A line that ends in LF only is not the start of a record.
        let log = cat(&[&record(b"a", b"one"), b"[b]: two\n"]);
        assert_eq!(
            plan_of(TEXT, &log),
            Err(Refusal::TailNotARecord {
                format: TEXT,
                offset: 10,
                len: 9,
                at: 18,
                found: Excerpt::at(b"\n", 0),
            })
        );
        let whole = json(b"a", "t\u{2028}\"wo\x01".as_bytes());
        let log = cat(&[&json(b"a", b"one"), &whole[..whole.len() - 3]]);
        let offset = json(b"a", b"one").len() as u64;
        assert_eq!(
            plan_of(JSONL, &log),
            Ok(Some(TornTail {
                offset,
                len: whole.len() as u64 - 3
            }))
        );
    }

    #[test]
    fn what_the_encoder_never_writes_is_not_a_torn_record() {
        let first = record(b"a", b"one");
        for tail in [
            &b"[]: x"[..],              // empty name
            b"[a]: \r",                 // empty message
            "[␀a]: x".as_bytes(),       // name starting with 0x00
            b"[a]b]: x]: y",            // the reference's `]` in a name
            b"[a]: tab\there",          // a raw control byte
            "[a]: ␦41".as_bytes(),      // an escape where none is needed
            "[a]: ␦4g".as_bytes(),      // not an escape
            "[a]: \u{2028}".as_bytes(), // a character written escaped
            b"[a]: \xFF",               // not UTF-8
            b"[a]x",                    // no `]: ` after the name
            b"[a]: b\rc",               // CR not followed by LF
            b"\r",                      // a line end alone
            b"x",
        ] {
            let log = cat(&[&first, tail]);
            assert!(
                matches!(
                    plan_of(TEXT, &log),
                    Err(Refusal::TailNotARecord { offset: 10, .. })
                ),
                "{:?}: {:?}",
                tail.escape_ascii().to_string(),
                plan_of(TEXT, &log)
            );
        }
        let first = json(b"a", b"one");
        for tail in [
            &b"{\"ts\":\"2026-13"[..],            // month 13
            b"{\"ts\":\"2026-02-30",              // no such day
            b"{\"ts\":\"2026-11-27T12:00:00.50Z", // a trailing zero
            b"{\"peer\":\"",                      // members out of order
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"x",
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"\",",
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"\\u0000",
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"\\u0041",
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"a\\x",
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"a\",\"message\":\"\"",
            // base64 of valid UTF-8 is never written
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"YQ==\",\"name_encoding\"",
            b"{\"ts\":\"2026-11-27T12:00:00Z\",\"peer\":\"1.2.3.4:5\",\"name\":\"a\", ",
            b"{\"a\":1}",
        ] {
            let log = cat(&[&first, tail]);
            assert!(
                matches!(plan_of(JSONL, &log), Err(Refusal::TailNotARecord { .. })),
                "{:?}: {:?}",
                tail.escape_ascii().to_string(),
                plan_of(JSONL, &log)
            );
        }
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# The server MUST refuse to open a log whose first line is a record line
    //# or the start of a record of the other format than the configured one,
    //# and say which format the log has.
    #[test]
    fn a_log_of_the_other_format_is_refused() {
        let jsonl = cat(&[&json(b"a", b"one"), &json(b"b", b"two")]);
        assert_eq!(
            plan_of(TEXT, &jsonl),
            Err(Refusal::FormatMismatch {
                found: JSONL,
                configured: TEXT
            })
        );
        let text = record(b"a", b"one");
        assert_eq!(
            plan_of(JSONL, &text),
            Err(Refusal::FormatMismatch {
                found: TEXT,
                configured: JSONL
            })
        );
        // Only the start of a record, in either format.
        assert!(matches!(
            plan_of(JSONL, b"[a]: on"),
            Err(Refusal::FormatMismatch { found: TEXT, .. })
        ));
        assert!(matches!(
            plan_of(TEXT, b"{\"ts\":\"20"),
            Err(Refusal::FormatMismatch { found: JSONL, .. })
        ));
        assert_eq!(LogFormat::detect(&jsonl), Some(JSONL));
        assert_eq!(LogFormat::detect(&text), Some(TEXT));
        assert_eq!(LogFormat::detect(b""), None);
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# The server MUST refuse to open a non-empty log whose first line is
    //# neither a record line nor the start of a record, in either format.
    #[test]
    fn a_file_that_is_no_log_is_refused() {
        for (file, at) in [
            (&b"[a]: one\n[b]: two\n"[..], 8), // LF only
            (b"[server]\r\nport = 1\r\n", 8),  // INI
            (b"\x7fELF\x02\x01\x01\0", 0),     // binary
            (b"{\"a\": 1}\n", 2),              // JSON, not a record
            (b"\r\n[a]: one\r\n", 0),          // an empty first line
            (b"hello\r\n", 0),
        ] {
            for format in [TEXT, JSONL] {
                assert_eq!(
                    plan_of(format, file),
                    Err(Refusal::NotALog {
                        offset: at,
                        found: Excerpt::at(file, at as usize)
                    }),
                    "{}",
                    file.escape_ascii()
                );
            }
            assert_eq!(LogFormat::detect(file), None);
        }
    }

    #[test]
    fn reference_records_are_a_text_log() {
        let log = b"[a]b]: x]: y\r\n[bob]: raw \x01\xFF\nbytes\r\n";
        assert_eq!(plan_of(TEXT, log), Ok(None));
        assert_eq!(LogFormat::detect(log), Some(TEXT));
        // A torn msglog record after one of the reference's.
        let log = cat(&[log, b"[c]: x"]);
        assert!(matches!(plan_of(TEXT, &log), Ok(Some(_))));
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# The server MUST refuse to open a log whose last line is not a record
    //# line of the configured format.
    #[test]
    fn the_last_line_must_be_a_record() {
        let first = record(b"a", b"one");
        let garbage = b"GARBAGE \x00\xFF\r\n";
        // Garbage in the middle is not recovery's business.
        let log = cat(&[&first, garbage, &first]);
        assert_eq!(plan_of(TEXT, &log), Ok(None));
        // Garbage as the last line: refused, with or without a tail.
        for tail in [&b""[..], b"[a]: t"] {
            let log = cat(&[&first, garbage, tail]);
            assert_eq!(
                plan_of(TEXT, &log),
                Err(Refusal::LastLineNotARecord {
                    format: TEXT,
                    offset: 10,
                    found: Excerpt::at(&log, 10)
                })
            );
        }
        // Records of the other format appended to a log.
        let log = cat(&[&json(b"a", b"one"), &record(b"b", b"two")]);
        assert!(matches!(
            plan_of(JSONL, &log),
            Err(Refusal::LastLineNotARecord { .. })
        ));
        let log = cat(&[&record(b"b", b"two"), &json(b"a", b"one")]);
        assert!(matches!(
            plan_of(TEXT, &log),
            Err(Refusal::TailNotARecord { .. })
        ));
    }

    #[test]
    fn a_tail_too_long_for_a_record_is_refused() {
        let first = record(b"a", b"one");
        let long = vec![b'x'; TEXT.max_record_len()];
        let log = cat(&[&first, b"[a]: ", &long]);
        assert!(matches!(
            plan_of(TEXT, &log),
            Err(Refusal::TailTooLong { offset: 10, .. })
        ));
        // Beyond the window: no line end seen at all.
        let log = cat(&[&first, b"[a]: ", &vec![b'x'; END_WINDOW + 10]]);
        assert!(matches!(
            plan_of(TEXT, &log),
            Err(Refusal::TailTooLong { .. })
        ));
        // The longest record's start is one.
        let name = vec![0xFF; MAX_PAYLOAD_LEN];
        let longest = record(&name, &name);
        assert_eq!(longest.len(), TEXT.max_record_len());
        let log = cat(&[&first, &longest[..longest.len() - 1]]);
        assert!(matches!(plan_of(TEXT, &log), Ok(Some(_))));
    }

    #[test]
    fn a_line_longer_than_any_record_is_none() {
        let mut line = b"[a]: ".to_vec();
        line.resize(TEXT.max_record_len() + 1, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(LogFormat::detect(&line), None);
        let log = cat(&[&record(b"a", b"one"), &line]);
        assert!(matches!(
            plan_of(TEXT, &log),
            Err(Refusal::LastLineNotARecord { offset: 10, .. })
        ));
    }

    #[test]
    fn a_big_log_is_judged_by_its_ends() {
        let mut log = Vec::new();
        let message = vec![b'm'; 1000];
        while log.len() < 2 * END_WINDOW {
            encode_record(&mut log, b"big", &message);
        }
        let clean = log.len() as u64;
        assert_eq!(plan(TEXT, LogEnds::of(&log)), Ok(None));
        log.extend_from_slice(b"[big]: mm");
        assert_eq!(
            plan(TEXT, LogEnds::of(&log)),
            Ok(Some(TornTail {
                offset: clean,
                len: 9
            }))
        );
    }

    use crate::proto::record::encode_record;

    /// Field bytes rich in what escaping cares about.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        let chars: Vec<Vec<u8>> = [
            'é',
            '✓',
            '日',
            '😀',
            '\u{85}',
            '\u{A0}',
            '\u{2028}',
            '\u{2029}',
            '\u{202E}',
            '\u{FEFF}',
            '\u{200B}',
            '\u{61C}',
            '␀',
            '␦',
            '␡',
            '␢',
            '\u{2427}',
            '\u{10FFFF}',
        ]
        .iter()
        .map(|c| c.to_string().into_bytes())
        .collect();
        let broken: Vec<Vec<u8>> = vec![
            vec![0xE2, 0x82],
            vec![0xF0, 0x9F, 0x98],
            vec![0xC3],
            vec![0xED, 0xA0, 0x80],
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xE2, 0x80],
        ];
        prop::collection::vec(
            prop_oneof![
                6 => (0x20u8..0x7F).prop_map(|b| vec![b]),
                1 => (0u8..0x20).prop_map(|b| vec![b]),
                1 => Just(vec![0x7F]),
                1 => Just(b"]".to_vec()),
                1 => Just(b"\"\\".to_vec()),
                1 => any::<u8>().prop_map(|b| vec![b]),
                2 => prop::sample::select(chars),
                1 => prop::sample::select(broken),
            ],
            1..8,
        )
        .prop_map(|parts| parts.concat())
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        field().prop_map(|mut n| {
            if n[0] == 0 {
                n[0] = b'n';
            }
            n
        })
    }

    fn json_context() -> impl Strategy<Value = JsonContext> {
        let time = (
            0u64..253_402_300_800,
            prop_oneof![
                Just(0u32),
                0u32..1_000_000_000,
                (0u32..1000).prop_map(|u| u * 1000)
            ],
        )
            .prop_map(|(s, n)| JsonContext::timestamp_of(UNIX_EPOCH + Duration::new(s, n)));
        let peer = peer_address().prop_map(|a| a.to_string());
        (time, peer).prop_map(|(timestamp, peer)| JsonContext { timestamp, peer })
    }

    fn json_record() -> impl Strategy<Value = Vec<u8>> {
        (json_context(), name(), field()).prop_map(|(context, name, message)| {
            let mut out = Vec::new();
            encode_json_record(&mut out, &context, &name, &message);
            out
        })
    }

    fn text_record() -> impl Strategy<Value = Vec<u8>> {
        (name(), field()).prop_map(|(name, message)| record(&name, &message))
    }

    /// Inserts `bad` after the first `at` bytes of a record and keeps what
    /// comes before it: `record[..at] ++ bad`.
    fn mutant(record: &[u8], at: usize, bad: &[u8]) -> Vec<u8> {
        cat(&[&record[..at], bad])
    }

    /// Socket addresses as the server may see them, IPv6 ones rich in zero
    /// groups (where the canonical form compresses the longest run).
    fn peer_address() -> impl Strategy<Value = SocketAddr> {
        let group =
            prop_oneof![3 => Just(0u16), 1 => Just(1u16), 1 => Just(0xFFFF), 1 => any::<u16>()];
        let v6 = (
            prop::array::uniform8(group),
            any::<u16>(),
            prop_oneof![Just(0u32), any::<u32>()],
        )
            .prop_map(|(g, port, scope)| {
                SocketAddr::V6(std::net::SocketAddrV6::new(g.into(), port, 0, scope))
            });
        let mapped = (any::<std::net::Ipv4Addr>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((ip.to_ipv6_mapped(), port)));
        prop_oneof![any::<SocketAddr>(), v6, mapped]
    }

    #[test]
    fn what_no_peer_address_starts_with_is_refused() {
        for text in [
            "1.2.3.4.",
            "256",
            "01",
            "1.2.3.4:65536",
            "1.2.3.4:01",
            "[1::2::",
            "[1::0",
            "[01",
            "[1:0:0:0:5:",
            "[1:2:3:4:5:6:7::",
            "[::1%0",
            "[::1]:x",
            "[A",
        ] {
            assert!(!jsonl::is_peer_start(text), "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn every_start_of_a_peer_address_is_one(addr in peer_address()) {
            let text = addr.to_string();
            for k in 0..=text.len() {
                prop_assert!(jsonl::is_peer_start(&text[..k]), "{} of {}", k, text);
            }
        }

        #[test]
        fn every_start_of_a_text_record_is_one(r in text_record()) {
            for k in 0..=r.len() {
                prop_assert!(is_record_prefix(TEXT, &r[..k]), "{} of {}", k, r.escape_ascii());
            }
        }

        #[test]
        fn every_start_of_a_json_record_is_one(r in json_record()) {
            for k in 0..=r.len() {
                prop_assert!(is_record_prefix(JSONL, &r[..k]), "{} of {}", k, r.escape_ascii());
            }
        }

        /// Bytes no text record has anywhere before its CR LF: raw control
        /// bytes (CR is left out: after a whole message it starts the line
        /// end), bytes never in UTF-8, characters always escaped (not `␦`,
        /// which starts an escape), escapes of ASCII or control bytes
        /// (written plain or as pictures), and `␦` before a non-digit.
        #[test]
        fn text_mutants_are_refused(
            r in text_record(),
            at in any::<prop::sample::Index>(),
            bad in prop_oneof![
                (0u8..0x20).prop_filter("CR", |&b| b != b'\r').prop_map(|b| vec![b]),
                prop::sample::select(vec![0x7Fu8, 0xFF, 0xFE, 0xC0, 0xC1, 0xF5]).prop_map(|b| vec![b]),
                prop::sample::select(vec!['\u{2028}', '\u{85}', '\u{FEFF}', '\u{2420}', '\u{2422}', '\u{202E}'])
                    .prop_map(|c| c.to_string().into_bytes()),
                (0u8..0x80).prop_filter("`]`", |&b| b != b']')
                    .prop_map(|b| format!("␦{b:02X}").into_bytes()),
                prop::sample::select(vec!["␦g", "␦a", "␦ ", "␦4x"]).prop_map(|s| s.as_bytes().to_vec()),
            ],
        ) {
            let body = r.len() - 2;
            let m = mutant(&r, at.index(body), &bad);
            prop_assert!(!is_record_prefix(TEXT, &m), "{}", m.escape_ascii());
        }

        /// JSON records have no raw control byte (LF only at the very end)
        /// and no byte that is never in UTF-8.
        #[test]
        fn json_mutants_are_refused(
            r in json_record(),
            at in any::<prop::sample::Index>(),
            bad in prop_oneof![
                (0u8..0x20).prop_map(|b| vec![b]),
                prop::sample::select(vec![0xFFu8, 0xFE, 0xC0, 0xC1, 0xF5]).prop_map(|b| vec![b]),
            ],
        ) {
            // Before the closing `}`: an LF after it would end the record.
            let m = mutant(&r, at.index(r.len() - 1), &bad);
            prop_assert!(!is_record_prefix(JSONL, &m), "{}", m.escape_ascii());
        }

        /// Keys the encoder never writes, and characters it never escapes.
        #[test]
        fn json_structure_mutants_are_refused(r in json_record(), which in 0usize..4) {
            let (from, to): (&[u8], &[u8]) = [
                (&b"\"peer\""[..], &b"\"pear\""[..]),
                (b"\"name\":", b"\"nane\":"),
                (b"\"message\":\"", b"\"message\":\"\\u0041"),
                (b"{\"ts\"", b"{\"tz\""),
            ][which];
            let i = find(&r, from).unwrap();
            let m = cat(&[&r[..i], to]);
            prop_assert!(!is_record_prefix(JSONL, &m), "{}", m.escape_ascii());
        }
    }
}
