//! The users-file vectors, `spec/vectors/users.json` (spec:
//! #authentication): which lines parse and to which names, which files are
//! refused at which line, how names are written, and which passwords verify
//! against which PHC strings.
//!
//! Python's standard library has no argon2, so `generate.py` cannot make
//! these; this file is their generator instead. The expectations below are
//! written by hand from the spec; only the PHC strings are computed (argon2id
//! with cheap parameters and fixed salts, so the output is the same every
//! time). `the_vectors_match_their_generator` fails when the file and the
//! generator differ; regenerate with
//!
//!     cargo test --test users_vectors -- --ignored regenerate_users_vectors
//!
//! and `msglog_reads_the_vectors_as_they_say` runs every vector against
//! msglog's parser and verifier.

use std::path::PathBuf;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use msglog::server::users::file::decode_name;
use msglog::server::users::{encode_name, verify_password, UsersFile};
use serde::{Deserialize, Serialize};

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec/vectors/users.json")
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vectors {
    comment: String,
    lines: Vec<LineVector>,
    files: Vec<FileVector>,
    names: Vec<NameVector>,
    verify: Vec<VerifyVector>,
}

/// One line of a users file, without its line ending.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct LineVector {
    id: String,
    /// The line as text; `line_hex` instead when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line_hex: Option<String>,
    /// `user`, `other` (blank or comment) or `invalid`.
    kind: String,
    /// For `user`: the name the line stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_hex: Option<String>,
    /// For `invalid`: what is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

/// A whole file: its users in order, or the first line at fault.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct FileVector {
    id: String,
    text: String,
    /// The users' names, in order; absent when the file is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names_hex: Option<Vec<String>>,
    /// The 1-based line a reader refuses the file at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

/// How msglog writes a name as NAME; a reader must decode `field` to it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct NameVector {
    name_hex: String,
    field: String,
}

/// Whether a password verifies against a PHC string.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct VerifyVector {
    id: String,
    phc: String,
    password_hex: String,
    verifies: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// An argon2id PHC string with a fixed salt.
fn phc(password: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> String {
    let params = Params::new(m, t, p, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(password, salt)
        .unwrap()
        .to_string()
}

fn user(id: &str, line: &str, name: &[u8]) -> LineVector {
    LineVector {
        id: id.into(),
        line: Some(line.into()),
        line_hex: None,
        kind: "user".into(),
        name_hex: Some(hex(name)),
        why: None,
    }
}

fn other(id: &str, line: &str) -> LineVector {
    LineVector {
        id: id.into(),
        line: Some(line.into()),
        line_hex: None,
        kind: "other".into(),
        name_hex: None,
        why: None,
    }
}

fn invalid(id: &str, line: &str, why: &str) -> LineVector {
    LineVector {
        id: id.into(),
        line: Some(line.into()),
        line_hex: None,
        kind: "invalid".into(),
        name_hex: None,
        why: Some(why.into()),
    }
}

fn generate() -> Vectors {
    let p1 = phc(b"correct horse", b"msglog-vectors-1", 64, 1, 1);
    let p2 = phc(b"battery staple", b"msglog-vectors-2", 64, 1, 1);
    let mut raw = user("user-raw-non-utf8", "", b"\xffA");
    raw.line = None;
    raw.line_hex = Some(hex(&[b"\xffA:", p1.as_bytes()].concat()));
    let lines = vec![
        user("user-plain", &format!("alice:{p1}"), b"alice"),
        user(
            "user-blanks-around-phc",
            &format!("alice: \t{p1} \t"),
            b"alice",
        ),
        user(
            "user-percent-colon-percent",
            &format!("b%3Ao%25b:{p1}"),
            b"b:o%b",
        ),
        user(
            "user-percent-lower-case",
            &format!("caf%c3%a9:{p1}"),
            "café".as_bytes(),
        ),
        user("user-utf8-raw", &format!("café:{p1}"), "café".as_bytes()),
        raw,
        user("user-percent-ff", &format!("%FF:{p1}"), b"\xff"),
        user(
            "user-space-inside",
            &format!("John Smith:{p1}"),
            b"John Smith",
        ),
        user(
            "user-spaces-escaped-at-edges",
            &format!("%20x%09:{p1}"),
            b" x\t",
        ),
        user("user-hash-escaped", &format!("%23root:{p1}"), b"#root"),
        user("user-hash-inside", &format!("a#b:{p1}"), b"a#b"),
        user("user-nul-inside", &format!("a%00b:{p1}"), b"a\x00b"),
        user(
            "user-escaped-line-break",
            &format!("a%0D%0Ab:{p1}"),
            b"a\r\nb",
        ),
        other("blank-empty", ""),
        other("blank-spaces-and-tabs", " \t  "),
        other("comment", "# msglog users"),
        other("comment-indented", "  \t# indented"),
        other("comment-that-looks-like-a-user", &format!("#alice:{p1}")),
        invalid("no-colon", "alice", "no ':' after the name"),
        invalid("empty-name", &format!(":{p1}"), "the name is empty"),
        invalid(
            "percent-one-digit",
            &format!("a%4:{p1}"),
            "'%' not followed by two hex digits",
        ),
        invalid(
            "percent-not-hex",
            &format!("a%zz:{p1}"),
            "'%' not followed by two hex digits",
        ),
        invalid(
            "percent-at-end",
            &format!("a%:{p1}"),
            "'%' not followed by two hex digits",
        ),
        invalid(
            "raw-space-before-name",
            &format!(" alice:{p1}"),
            "the name starts with a raw space",
        ),
        invalid(
            "raw-space-after-name",
            &format!("alice :{p1}"),
            "the name ends with a raw space",
        ),
        invalid(
            "raw-tab-before-name",
            &format!("\talice:{p1}"),
            "the name starts with a raw tab",
        ),
        invalid(
            "raw-cr-in-name",
            &format!("a\rb:{p1}"),
            "a raw CR in the name",
        ),
        invalid(
            "name-starts-with-nul",
            &format!("%00a:{p1}"),
            "the name starts with 0x00, which no NAME frame may",
        ),
        invalid("not-phc", "alice:secret", "the hash is not a PHC string"),
        invalid("phc-empty", "alice:", "the hash is not a PHC string"),
        invalid(
            "second-colon",
            &format!("a:b:{p1}"),
            "the name ends at the first ':', and `b:$argon2id...` is not a PHC string",
        ),
        invalid(
            "phc-argon2i",
            &format!("alice:{}", p1.replace("$argon2id$", "$argon2i$")),
            "argon2i, not argon2id",
        ),
        invalid(
            "phc-argon2d",
            &format!("alice:{}", p1.replace("$argon2id$", "$argon2d$")),
            "argon2d, not argon2id",
        ),
        invalid(
            "phc-bcrypt",
            "alice:$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "bcrypt, not argon2id",
        ),
        invalid(
            "phc-version-16",
            &format!("alice:{}", p1.replace("$v=19$", "$v=16$")),
            "version 16, not 19",
        ),
        invalid(
            "phc-no-version",
            &format!("alice:{}", p1.replace("$v=19$", "$")),
            "no version",
        ),
        invalid(
            "phc-no-hash",
            &format!("alice:{}", p1.rsplit_once('$').unwrap().0),
            "no hash value",
        ),
        invalid(
            "phc-lanes-zero",
            &format!("alice:{}", p1.replace(",p=1$", ",p=0$")),
            "p=0 is not a valid argon2 parameter",
        ),
        invalid(
            "phc-more-than-1-gib",
            &format!("alice:{}", p1.replace("$m=64,", "$m=1048577,")),
            "more than 1 GiB (1048576 KiB) per verification",
        ),
        invalid(
            "phc-more-than-64-passes",
            &format!("alice:{}", p1.replace(",t=1,", ",t=65,")),
            "more than 64 passes",
        ),
    ];
    let file = |id: &str, text: String, names: Option<&[&[u8]]>, error: Option<(usize, &str)>| {
        FileVector {
            id: id.into(),
            text,
            names_hex: names.map(|n| n.iter().map(|n| hex(n)).collect()),
            error_line: error.map(|e| e.0),
            why: error.map(|e| e.1.into()),
        }
    };
    let files = vec![
        file("empty", String::new(), Some(&[]), None),
        file(
            "crlf-comments-and-no-final-line-break",
            format!("# team\r\nalice:{p1}\r\n\r\n  # more\r\nbob:{p2}"),
            Some(&[b"alice", b"bob"]),
            None,
        ),
        file(
            "duplicate-name",
            format!("alice:{p1}\n# again\nalice:{p2}\n"),
            None,
            Some((3, "alice is on line 1 already")),
        ),
        file(
            "duplicate-after-decoding",
            format!("alice:{p1}\n%61lice:{p2}\n"),
            None,
            Some((2, "%61lice is alice, on line 1 already")),
        ),
        file(
            "first-bad-line-is-reported",
            format!("# ok\nalice:{p1}\nbob\ncarol\n"),
            None,
            Some((3, "no ':' after the name")),
        ),
    ];
    let names = [
        (&b"alice"[..], "alice"),
        ("café:bar".as_bytes(), "café%3Abar"),
        (b"100%", "100%25"),
        (b" a b ", "%20a b%20"),
        (b"#x#", "%23x#"),
        (b"a\tb\r\n", "a%09b%0D%0A"),
        (b"\xff\xfe", "%FF%FE"),
        ("a\u{202e}b".as_bytes(), "a%E2%80%AEb"),
        (b"a\x00", "a%00"),
    ]
    .into_iter()
    .map(|(name, field)| NameVector {
        name_hex: hex(name),
        field: field.into(),
    })
    .collect();
    let binary = phc(b"\x00\xff\x80\x0a", b"msglog-vectors-3", 64, 1, 1);
    let lanes = phc(b"lanes", b"msglog-vectors-4", 128, 2, 2);
    let text = phc("pässwörd".as_bytes(), b"msglog-vectors-5", 64, 1, 1);
    let check = |id: &str, phc: &str, password: &[u8], verifies: bool| VerifyVector {
        id: id.into(),
        phc: phc.into(),
        password_hex: hex(password),
        verifies,
    };
    let verify = vec![
        check("right-password", &p1, b"correct horse", true),
        check("one-byte-short", &p1, b"correct hors", false),
        check("one-byte-more", &p1, b"correct horse ", false),
        check("other-case", &p1, b"Correct horse", false),
        check("reference-rule-password", &p1, b"A", false),
        check("another-user-s-password", &p1, b"battery staple", false),
        check("binary-password", &binary, b"\x00\xff\x80\x0a", true),
        check("binary-password-prefix", &binary, b"\x00\xff\x80", false),
        check("two-lanes-two-passes", &lanes, b"lanes", true),
        check("two-lanes-wrong", &lanes, b"lane", false),
        check("utf8-password", &text, "pässwörd".as_bytes(), true),
        check("utf8-password-ascii-lookalike", &text, b"passwoerd", false),
    ];
    Vectors {
        comment: "msglog users-file vectors (spec/protocol.md#authentication), made by tests/users_vectors.rs; hashes are argon2id with cheap parameters and fixed salts, for tests only".into(),
        lines,
        files,
        names,
        verify,
    }
}

fn rendered(vectors: &Vectors) -> String {
    serde_json::to_string_pretty(vectors).unwrap() + "\n"
}

#[test]
#[ignore = "writes spec/vectors/users.json"]
fn regenerate_users_vectors() {
    std::fs::write(vectors_path(), rendered(&generate())).unwrap();
}

#[test]
fn the_vectors_match_their_generator() {
    let on_disk = std::fs::read_to_string(vectors_path()).unwrap();
    assert!(
        on_disk == rendered(&generate()),
        "spec/vectors/users.json differs from its generator; run \
         `cargo test --test users_vectors -- --ignored regenerate_users_vectors`"
    );
}

fn line_bytes(v: &LineVector) -> Vec<u8> {
    match (&v.line, &v.line_hex) {
        (Some(line), None) => line.as_bytes().to_vec(),
        (None, Some(hex)) => unhex(hex),
        _ => panic!("{}: exactly one of line and line_hex", v.id),
    }
}

//= spec/protocol.md#authentication
//= type=test
//# Each line of a users file MUST be blank, a comment whose first character other than spaces and tabs is `#`, or a user line `NAME:PHC`.
//= spec/protocol.md#authentication
//= type=test
//# In NAME, `%` followed by two hexadecimal digits MUST stand for the byte with that value, and every other byte except `:`, CR and LF for itself.
//= spec/protocol.md#authentication
//= type=test
//# PHC MUST be an argon2id hash in the PHC string format, version 19, with its parameters, salt and hash: `$argon2id$v=19$m=MEMORY,t=PASSES,p=LANES$SALT$HASH`.
//= spec/protocol.md#authentication
//= type=test
//# With a users file, a password MUST verify exactly when the NAME is in the file and the password hashes, with the salt and parameters of the NAME's PHC string, to its hash.
#[test]
fn msglog_reads_the_vectors_as_they_say() {
    let vectors: Vectors =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    for v in &vectors.lines {
        let parsed = UsersFile::parse(&line_bytes(v));
        match v.kind.as_str() {
            "user" => {
                let file = parsed.unwrap_or_else(|e| panic!("{}: {e}", v.id));
                let names: Vec<_> = file.users().map(|u| hex(&u.name)).collect();
                assert_eq!(names, [v.name_hex.clone().unwrap()], "{}", v.id);
            }
            "other" => {
                let file = parsed.unwrap_or_else(|e| panic!("{}: {e}", v.id));
                assert_eq!(file.users().count(), 0, "{}", v.id);
            }
            "invalid" => {
                let error = parsed.err().unwrap_or_else(|| panic!("{} parsed", v.id));
                assert_eq!(error.line, 1, "{}", v.id);
            }
            kind => panic!("{}: unknown kind {kind}", v.id),
        }
    }
    for v in &vectors.files {
        let parsed = UsersFile::parse(v.text.as_bytes());
        match (&v.names_hex, v.error_line) {
            (Some(names), None) => {
                let file = parsed.unwrap_or_else(|e| panic!("{}: {e}", v.id));
                let got: Vec<_> = file.users().map(|u| hex(&u.name)).collect();
                assert_eq!(&got, names, "{}", v.id);
            }
            (None, Some(line)) => {
                let error = parsed.err().unwrap_or_else(|| panic!("{} parsed", v.id));
                assert_eq!(error.line, line, "{}: {error}", v.id);
            }
            _ => panic!("{}: exactly one of names_hex and error_line", v.id),
        }
    }
    for v in &vectors.names {
        let name = unhex(&v.name_hex);
        assert_eq!(encode_name(&name), v.field);
        assert_eq!(decode_name(v.field.as_bytes()).unwrap(), name);
    }
    for v in &vectors.verify {
        // Each PHC string is a valid users-file hash...
        let file = UsersFile::parse(format!("u:{}", v.phc).as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", v.id));
        let user = file.users().next().unwrap();
        // ... and verifies exactly the password it says.
        assert_eq!(
            verify_password(&unhex(&v.password_hex), &user.hash),
            v.verifies,
            "{}",
            v.id
        );
    }
}
