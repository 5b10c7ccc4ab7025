//! The users file (spec: #authentication): one user per line, `NAME:PHC`,
//! with `#` comments and blank lines. Pure: bytes in, users or the line at
//! fault out; and the edits `msglog passwd` makes, which keep every other
//! line byte for byte.
//!
//! A NAME is bytes, as a client sends it in its NAME frame. In the file,
//! `%HH` (two hex digits, either case) stands for the byte 0xHH and every
//! other byte except `:`, CR and LF for itself; so `:`, `%`, line breaks and
//! bytes that are not UTF-8 are written `%3A`, `%25`, `%0A`, `%FF`. The
//! writer ([`encode_name`]) keeps readable UTF-8 as it is and escapes what
//! could confuse a reader of the file or of a diagnostic: control and
//! invisible characters, `%`, `:`, a leading `#` and a leading or trailing
//! space.

use std::collections::HashMap;
use std::fmt;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Params, ARGON2ID_IDENT};

use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::is_dangerous_char;

/// The argon2 version every hash must have: 0x13, written `v=19`.
const ARGON2_VERSION: u32 = 19;

/// Most memory one verification may use, in KiB (1 GiB). A hash asking for
/// more is a mistake that would take the server's memory at each login.
pub const MAX_MEMORY_KIB: u32 = 1 << 20;

/// Most passes one verification may make. A hash asking for more would hold
/// a verification slot for minutes.
pub const MAX_PASSES: u32 = 64;

/// What is wrong with one line of a users file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no ':' after the name; a user line is NAME:PHC (write a ':' in a name as %3A)")]
    NoSeparator,
    #[error("the name is empty")]
    EmptyName,
    #[error("'%' at byte {at} of the name is not followed by two hex digits; write a '%' in a name as %25")]
    BadPercentEscape { at: usize },
    #[error("the name starts or ends with a space or tab; if it belongs to the name write it %20 (space) or %09 (tab)")]
    NameEdgeBlank,
    #[error("the name holds a raw CR; write it %0D")]
    RawCarriageReturn,
    #[error("the name starts with a NUL byte, which no client can log in with (spec: #name)")]
    NameStartsWithNul,
    #[error("the name is {len} bytes long; a NAME frame holds at most {MAX_PAYLOAD_LEN}")]
    NameTooLong { len: usize },
    #[error("the password hash is not a PHC string ({reason}); write one with `msglog passwd`")]
    NotPhc { reason: String },
    #[error("the password hash is {algorithm}; only argon2id is accepted: set the password again with `msglog passwd`")]
    NotArgon2id { algorithm: String },
    #[error("the password hash has argon2 version {found}; only v=19 is accepted")]
    WrongVersion { found: String },
    #[error("the password hash has no salt or no hash value")]
    Incomplete,
    #[error("the password hash has invalid argon2id parameters ({reason})")]
    BadParams { reason: String },
    #[error("the password hash asks for m={kib} KiB per verification; at most {MAX_MEMORY_KIB} KiB (1 GiB) is accepted")]
    TooMuchMemory { kib: u32 },
    #[error("the password hash asks for t={passes} passes; at most {MAX_PASSES} are accepted")]
    TooManyPasses { passes: u32 },
    #[error("user {name:?} is already on line {first}; a name may have one line only")]
    Duplicate { name: EncodedName, first: usize },
}

/// A users file that does not parse: the first line at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub error: LineError,
}

/// One user of the file.
#[derive(Debug, Clone)]
pub struct User {
    pub name: Vec<u8>,
    pub hash: PasswordHash,
    /// The argon2id parameters the hash records (and its output length).
    pub params: Params,
}

/// What a line of the file is.
#[derive(Debug, Clone)]
enum Kind {
    /// Blank or a comment: kept as it is.
    Other,
    User(Box<User>),
}

/// A line as it was read, so that it can be written back unchanged.
#[derive(Debug, Clone)]
struct Line {
    /// The line without its terminator.
    text: Vec<u8>,
    /// `\n`, `\r\n`, or empty for a last line without one.
    terminator: &'static [u8],
    kind: Kind,
}

/// A parsed users file, every line kept for rewriting.
#[derive(Debug, Clone, Default)]
pub struct UsersFile {
    lines: Vec<Line>,
}

/// What [`UsersFile::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Replaced,
}

//= spec/protocol.md#authentication
//# Each line of a users file MUST be blank, a comment whose first character other than spaces and tabs is `#`, or a user line `NAME:PHC`.
impl UsersFile {
    /// Parses a whole file; the first line at fault is the error.
    pub fn parse(bytes: &[u8]) -> Result<UsersFile, ParseError> {
        let mut lines = Vec::new();
        let mut first_line_of: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (raw, terminator, after) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) if at > 0 && rest[at - 1] == b'\r' => {
                    (&rest[..at - 1], b"\r\n".as_slice(), &rest[at + 1..])
                }
                Some(at) => (&rest[..at], b"\n".as_slice(), &rest[at + 1..]),
                None => (rest, b"".as_slice(), &b""[..]),
            };
            rest = after;
            let number = lines.len() + 1;
            let at_fault = |error| ParseError {
                line: number,
                error,
            };
            let kind = parse_line(raw).map_err(at_fault)?;
            if let Kind::User(user) = &kind {
                //= spec/protocol.md#authentication
                //# A server MUST refuse a users file with a line that breaks these rules, or with two lines for the same name, and say which file, which line and what is wrong.
                if let Some(&first) = first_line_of.get(&user.name) {
                    return Err(at_fault(LineError::Duplicate {
                        name: EncodedName::of(&user.name),
                        first,
                    }));
                }
                first_line_of.insert(user.name.clone(), number);
            }
            lines.push(Line {
                text: raw.to_vec(),
                terminator,
                kind,
            });
        }
        Ok(UsersFile { lines })
    }

    /// The users, in the order of the file.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.lines.iter().filter_map(|l| match &l.kind {
            Kind::User(u) => Some(&**u),
            Kind::Other => None,
        })
    }

    /// Gives `name` the password hash `phc`: its line is replaced in place,
    /// or a line is added at the end. Every other line stays as it is.
    pub fn set(&mut self, name: &[u8], phc: &str) -> Result<Change, ParseError> {
        let mut text = encode_name(name).into_bytes();
        text.push(b':');
        text.extend_from_slice(phc.as_bytes());
        // The new line must read back as the user it is meant to be.
        let kind = parse_line(&text).map_err(|error| ParseError {
            line: self.line_of(name).unwrap_or(self.lines.len() + 1),
            error,
        })?;
        if let Some(index) = self.index_of(name) {
            let line = &mut self.lines[index];
            line.text = text;
            line.kind = kind;
            return Ok(Change::Replaced);
        }
        let terminator = self.terminator_style();
        if let Some(last) = self.lines.last_mut() {
            if last.terminator.is_empty() {
                last.terminator = terminator;
            }
        }
        self.lines.push(Line {
            text,
            terminator,
            kind,
        });
        Ok(Change::Added)
    }

    /// Removes `name`'s line; false when the file has no such user.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        match self.index_of(name) {
            Some(index) => {
                self.lines.remove(index);
                true
            }
            None => false,
        }
    }

    /// The file's bytes: every line and its terminator.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.lines {
            out.extend_from_slice(&line.text);
            out.extend_from_slice(line.terminator);
        }
        out
    }

    fn index_of(&self, name: &[u8]) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| matches!(&l.kind, Kind::User(u) if u.name == name))
    }

    fn line_of(&self, name: &[u8]) -> Option<usize> {
        self.index_of(name).map(|i| i + 1)
    }

    /// The line ending the file uses (that of its first line), LF if none.
    fn terminator_style(&self) -> &'static [u8] {
        self.lines
            .iter()
            .map(|l| l.terminator)
            .find(|t| !t.is_empty())
            .unwrap_or(b"\n")
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn parse_line(raw: &[u8]) -> Result<Kind, LineError> {
    let first = raw.iter().position(|&b| !is_blank(b));
    match first.map(|at| raw[at]) {
        None | Some(b'#') => return Ok(Kind::Other),
        Some(_) => {}
    }
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or(LineError::NoSeparator)?;
    let name = decode_name(&raw[..colon])?;
    let (hash, params) = parse_phc(trim_blanks(&raw[colon + 1..]))?;
    Ok(Kind::User(Box::new(User { name, hash, params })))
}

fn trim_blanks(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_blank(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_blank(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

//= spec/protocol.md#authentication
//# In NAME, `%` followed by two hexadecimal digits MUST stand for the byte with that value, and every other byte except `:`, CR and LF for itself.
/// The name a NAME field of the file stands for.
pub fn decode_name(field: &[u8]) -> Result<Vec<u8>, LineError> {
    if field.is_empty() {
        return Err(LineError::EmptyName);
    }
    if is_blank(field[0]) || is_blank(field[field.len() - 1]) {
        return Err(LineError::NameEdgeBlank);
    }
    let mut name = Vec::with_capacity(field.len());
    let mut at = 0;
    while at < field.len() {
        match field[at] {
            b'%' => {
                let hex = |i: usize| field.get(i).and_then(|&b| (b as char).to_digit(16));
                let (Some(high), Some(low)) = (hex(at + 1), hex(at + 2)) else {
                    return Err(LineError::BadPercentEscape { at });
                };
                name.push((high * 16 + low) as u8);
                at += 3;
            }
            b'\r' => return Err(LineError::RawCarriageReturn),
            byte => {
                name.push(byte);
                at += 1;
            }
        }
    }
    if name.len() > MAX_PAYLOAD_LEN {
        return Err(LineError::NameTooLong { len: name.len() });
    }
    if name[0] == 0 {
        return Err(LineError::NameStartsWithNul);
    }
    Ok(name)
}

//= spec/protocol.md#authentication
//# PHC MUST be an argon2id hash in the PHC string format, version 19, with its parameters, salt and hash: `$argon2id$v=19$m=MEMORY,t=PASSES,p=LANES$SALT$HASH`.
fn parse_phc(field: &[u8]) -> Result<(PasswordHash, Params), LineError> {
    let text = std::str::from_utf8(field).map_err(|_| LineError::NotPhc {
        reason: "not ASCII".into(),
    })?;
    let hash = PasswordHash::new(text).map_err(|e| LineError::NotPhc {
        reason: e.to_string(),
    })?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err(LineError::NotArgon2id {
            algorithm: hash.algorithm.to_string(),
        });
    }
    match hash.version {
        Some(v) if v == ARGON2_VERSION => {}
        other => {
            return Err(LineError::WrongVersion {
                found: other.map_or_else(|| "none".into(), |v| v.to_string()),
            })
        }
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(LineError::Incomplete);
    }
    let params = Params::try_from(&hash).map_err(|e| LineError::BadParams {
        reason: e.to_string(),
    })?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(LineError::TooMuchMemory {
            kib: params.m_cost(),
        });
    }
    if params.t_cost() > MAX_PASSES {
        return Err(LineError::TooManyPasses {
            passes: params.t_cost(),
        });
    }
    Ok((hash, params))
}

/// Whether `name` can be a user: one a client can log in with.
pub fn check_name(name: &[u8]) -> Result<(), LineError> {
    decode_name(encode_name(name).as_bytes()).map(drop)
}

/// A name as the users file writes it ([`encode_name`]); also how
/// diagnostics show a name: always one line, `%` escapes for what is not
/// readable.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedName(String);

impl EncodedName {
    pub fn of(name: &[u8]) -> EncodedName {
        EncodedName(encode_name(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EncodedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EncodedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Writes a name as a NAME field of the users file: readable UTF-8 as it is;
/// `%HH` for each byte of control and invisible characters, `%`, `:`, a
/// leading `#`, a leading or trailing space, and bytes that are not UTF-8.
/// [`decode_name`] gives back exactly `name`.
pub fn encode_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    let push_escaped = |out: &mut String, bytes: &[u8]| {
        for b in bytes {
            out.push_str(&format!("%{b:02X}"));
        }
    };
    let mut at = 0;
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            let len = c.len_utf8();
            let first = at == 0;
            let last = at + len == name.len();
            let escape = matches!(c, '%' | ':')
                || is_dangerous_char(c)
                || (first && c == '#')
                || ((first || last) && c == ' ');
            if escape {
                let mut buf = [0; 4];
                push_escaped(&mut out, c.encode_utf8(&mut buf).as_bytes());
            } else {
                out.push(c);
            }
            at += len;
        }
        push_escaped(&mut out, chunk.invalid());
        at += chunk.invalid().len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;
    use argon2::{Algorithm, Argon2, Version};
    use proptest::prelude::*;

    /// A real argon2id hash with cheap parameters.
    fn phc(password: &[u8]) -> String {
        let params = Params::new(64, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(password, b"saltsaltsalt")
            .unwrap()
            .to_string()
    }

    fn error_of(text: &str) -> ParseError {
        UsersFile::parse(text.as_bytes()).unwrap_err()
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# Each line of a users file MUST be blank, a comment whose first character other than spaces and tabs is `#`, or a user line `NAME:PHC`.
    #[test]
    fn comments_blank_lines_and_users() {
        let text = format!(
            "# users\n\n   \t\n  # indented comment\nalice:{}\r\nbob: {} \n",
            phc(b"a"),
            phc(b"b")
        );
        let file = UsersFile::parse(text.as_bytes()).unwrap();
        let names: Vec<_> = file.users().map(|u| u.name.clone()).collect();
        assert_eq!(names, [b"alice".to_vec(), b"bob".to_vec()]);
        assert_eq!(file.to_bytes(), text.as_bytes(), "written back unchanged");
        assert_eq!(error_of("alice\n").error, LineError::NoSeparator);
        assert_eq!(error_of("# ok\n\nalice\n").line, 3);
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# In NAME, `%` followed by two hexadecimal digits MUST stand for the byte with that value, and every other byte except `:`, CR and LF for itself.
    #[test]
    fn names_decode_percent_escapes_and_take_other_bytes_as_they_are() {
        assert_eq!(decode_name(b"a%3Ab%3ac%25").unwrap(), b"a:b:c%");
        assert_eq!(decode_name(b"caf\xc3\xa9 x").unwrap(), "café x".as_bytes());
        assert_eq!(decode_name(b"%FF%00").unwrap(), b"\xff\x00");
        assert_eq!(decode_name(b"\xff").unwrap(), b"\xff");
        assert_eq!(
            decode_name(b"ab%4"),
            Err(LineError::BadPercentEscape { at: 2 })
        );
        assert_eq!(
            decode_name(b"%zz"),
            Err(LineError::BadPercentEscape { at: 0 })
        );
        assert_eq!(decode_name(b""), Err(LineError::EmptyName));
        assert_eq!(decode_name(b" a"), Err(LineError::NameEdgeBlank));
        assert_eq!(decode_name(b"a\t"), Err(LineError::NameEdgeBlank));
        assert_eq!(decode_name(b"%20a%20").unwrap(), b" a ");
        assert_eq!(decode_name(b"a\rb"), Err(LineError::RawCarriageReturn));
        assert_eq!(decode_name(b"%00a"), Err(LineError::NameStartsWithNul));
        assert_eq!(decode_name(b"a%00").unwrap(), b"a\x00");
        let long = "x".repeat(MAX_PAYLOAD_LEN + 1);
        assert_eq!(
            decode_name(long.as_bytes()),
            Err(LineError::NameTooLong {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# PHC MUST be an argon2id hash in the PHC string format, version 19, with its parameters, salt and hash: `$argon2id$v=19$m=MEMORY,t=PASSES,p=LANES$SALT$HASH`.
    #[test]
    fn only_complete_argon2id_v19_hashes_within_bounds_are_accepted() {
        let good = phc(b"pw");
        assert!(UsersFile::parse(format!("u:{good}").as_bytes()).is_ok());
        let argon2i = good.replace("$argon2id$", "$argon2i$");
        assert!(matches!(
            error_of(&format!("u:{argon2i}")).error,
            LineError::NotArgon2id { .. }
        ));
        let v16 = good.replace("$v=19$", "$v=16$");
        assert!(matches!(
            error_of(&format!("u:{v16}")).error,
            LineError::WrongVersion { .. }
        ));
        let no_hash = good.rsplit_once('$').unwrap().0;
        assert_eq!(
            error_of(&format!("u:{no_hash}")).error,
            LineError::Incomplete
        );
        assert!(matches!(
            error_of("u:secret").error,
            LineError::NotPhc { .. }
        ));
        assert!(matches!(
            error_of("u:$2b$12$abcdefghijklmnopqrstuv").error,
            LineError::NotPhc { .. } | LineError::NotArgon2id { .. }
        ));
        let huge = good.replace("m=64", "m=4194304");
        assert_eq!(
            error_of(&format!("u:{huge}")).error,
            LineError::TooMuchMemory { kib: 4_194_304 }
        );
        let slow = good.replace("t=1", "t=1000");
        assert_eq!(
            error_of(&format!("u:{slow}")).error,
            LineError::TooManyPasses { passes: 1000 }
        );
        assert!(matches!(
            error_of(&format!("u:{}", good.replace("p=1", "p=0"))).error,
            LineError::BadParams { .. }
        ));
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# A server MUST refuse a users file with a line that breaks these rules, or with two lines for the same name, and say which file, which line and what is wrong.
    #[test]
    fn the_same_name_twice_is_refused_however_it_is_written() {
        let text = format!("alice:{}\n# x\n%61lice:{}\n", phc(b"a"), phc(b"b"));
        let error = error_of(&text);
        assert_eq!(error.line, 3);
        assert_eq!(
            error.to_string(),
            "line 3: user \"alice\" is already on line 1; a name may have one line only"
        );
    }

    #[test]
    fn set_replaces_in_place_or_appends_and_keeps_every_other_line() {
        let text = format!("# team\r\nalice:{}\r\n\r\n# end, no newline", phc(b"a"));
        let mut file = UsersFile::parse(text.as_bytes()).unwrap();
        let new_alice = phc(b"A2");
        assert_eq!(file.set(b"alice", &new_alice).unwrap(), Change::Replaced);
        let bob = phc(b"b");
        assert_eq!(file.set(b"b:o b", &bob).unwrap(), Change::Added);
        let written = String::from_utf8(file.to_bytes()).unwrap();
        assert_eq!(
            written,
            format!("# team\r\nalice:{new_alice}\r\n\r\n# end, no newline\r\nb%3Ao b:{bob}\r\n")
        );
        let again = UsersFile::parse(written.as_bytes()).unwrap();
        assert_eq!(again.users().count(), 2);
        assert!(file.remove(b"alice"));
        assert!(!file.remove(b"alice"));
        assert_eq!(
            String::from_utf8(file.to_bytes()).unwrap(),
            format!("# team\r\n\r\n# end, no newline\r\nb%3Ao b:{bob}\r\n")
        );
        let mut empty = UsersFile::parse(b"").unwrap();
        empty.set(b"x", &bob).unwrap();
        assert_eq!(empty.to_bytes(), format!("x:{bob}\n").as_bytes());
    }

    #[test]
    fn set_refuses_a_name_no_client_can_log_in_with() {
        let mut file = UsersFile::default();
        assert_eq!(
            file.set(b"\0x", &phc(b"a")).unwrap_err().error,
            LineError::NameStartsWithNul
        );
        assert_eq!(
            file.set(b"", &phc(b"a")).unwrap_err().error,
            LineError::EmptyName
        );
    }

    #[test]
    fn encoding_keeps_readable_text_and_escapes_the_rest() {
        assert_eq!(encode_name(b"alice"), "alice");
        assert_eq!(encode_name("José Müller".as_bytes()), "José Müller");
        assert_eq!(encode_name(b"a:b%c"), "a%3Ab%25c");
        assert_eq!(encode_name(b"#x#"), "%23x#");
        assert_eq!(encode_name(b" a b "), "%20a b%20");
        assert_eq!(encode_name(b"a\tb\r\n"), "a%09b%0D%0A");
        assert_eq!(encode_name(b"\xff\xfe"), "%FF%FE");
        assert_eq!(encode_name("a\u{202e}b".as_bytes()), "a%E2%80%AEb");
        assert_eq!(encode_name(b" "), "%20");
    }

    proptest! {
        #[test]
        fn every_name_round_trips_through_a_user_line(name in proptest::collection::vec(any::<u8>(), 1..40)) {
            prop_assume!(name[0] != 0);
            let field = encode_name(&name);
            prop_assert!(!field.contains(['\n', '\r', ':']));
            prop_assert_eq!(decode_name(field.as_bytes()).unwrap(), name.clone());
            let line = format!("{field}:{}", phc(b"x"));
            let file = UsersFile::parse(line.as_bytes()).unwrap();
            prop_assert_eq!(&file.users().next().unwrap().name, &name);
        }
    }
}
