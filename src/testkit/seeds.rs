//! The committed fuzz corpus (`fuzz/corpus/<target>/seed-*`): client
//! streams, event scripts and records worth starting from, built in code
//! and from spec/vectors, in the byte layout each target's input takes.

use crate::proto::frame::Frame;
use crate::testkit::check::Step;

/// The fuzz input of `frame_parser` and `session`, in the byte layout the
/// `arbitrary` crate (1.x) derives for
/// `struct { sizes: Vec<u16>, limit: Option<u16>, bytes: &[u8] }`:
/// each vector element and `Some` is introduced by an odd byte and a
/// vector ends with an even one; integers are little-endian; the last field
/// takes the rest.
pub fn stream_input(sizes: &[u16], limit: Option<u16>, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 3 * sizes.len() + 4);
    for size in sizes {
        out.push(1);
        out.extend_from_slice(&size.to_le_bytes());
    }
    out.push(0);
    match limit {
        Some(max) => {
            out.push(1);
            out.extend_from_slice(&max.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(bytes);
    out
}

/// The fuzz input of `record_codec` for
/// `struct { cuts: Vec<u16>, bytes: &[u8] }` (layout as at
/// [`stream_input`]) that [`record_codec`] cuts back into `pairs` and `line`.
pub fn record_input(pairs: &[(&[u8], &[u8])], line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    for piece in pairs.iter().flat_map(|&(n, m)| [n, m]) {
        let len = u16::try_from(piece.len()).expect("seed pieces are short");
        out.push(1);
        out.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(piece);
    }
    out.push(0);
    out.extend_from_slice(&bytes);
    out.extend_from_slice(line);
    out
}

/// One seed file of the fuzz corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `frame_parser`, `session` or `record_codec`.
    pub target: &'static str,
    /// File name (in `fuzz/corpus/<target>/`).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A seed for `frame_parser` and `session`, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCase {
    pub name: String,
    pub sizes: Vec<u16>,
    pub limit: Option<u16>,
    pub bytes: Vec<u8>,
}

/// A seed for `record_codec`, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCase {
    pub name: String,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    pub line: Vec<u8>,
}

fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        // Every payload below is short; a too-long one is a bug here.
        f.encode(&mut out).expect("seed payloads fit a frame");
    }
    out
}

/// Client streams worth starting from: the original client's behaviours, a
/// row of each kind of the state table, pipelining, fragmentation, limits.
pub fn stream_cases() -> Vec<StreamCase> {
    use Frame::*;
    let login = |rest: &[Frame<'_>]| {
        let mut frames = vec![Name(b"MyTestCase"), Pass(b"A")];
        frames.extend_from_slice(rest);
        wire(&frames)
    };
    let cut = |mut stream: Vec<u8>, tail: &[u8]| {
        stream.extend_from_slice(tail);
        stream
    };
    let plain: Vec<(&str, Vec<u8>)> = vec![
        ("hello", login(&[Msg(b"Hello!"), Close])),
        ("two-messages", login(&[Msg(b"one"), Msg(b"two"), Close])),
        ("no-close", login(&[Msg(b"Hello!")])),
        ("close-first", wire(&[Close, Name(b"never")])),
        ("close-named", wire(&[Name(b"u"), Close])),
        ("password-b", wire(&[Name(b"u"), Pass(b"B"), Msg(b"never")])),
        ("password-baaa", wire(&[Name(b"u"), Pass(b"BAAA")])),
        ("empty-name", wire(&[Name(b"")])),
        ("nul-name", wire(&[Name(b"\0root")])),
        (
            "nul-inside-name",
            wire(&[Name(b"Al\0ice"), Pass(b"A"), Msg(b"hi")]),
        ),
        ("empty-pass", wire(&[Name(b"u"), Pass(b"")])),
        ("empty-msg", login(&[Msg(b"")])),
        ("msg-first", wire(&[Msg(b"Hello!")])),
        ("pass-first", wire(&[Pass(b"A")])),
        ("name-twice", wire(&[Name(b"u"), Name(b"v")])),
        ("msg-named", wire(&[Name(b"u"), Msg(b"early")])),
        ("pass-twice", login(&[Pass(b"A")])),
        ("unknown-0", wire(&[Unknown(0)])),
        ("unknown-5", wire(&[Name(b"u"), Unknown(5)])),
        ("unknown-ff", login(&[Unknown(0xFF)])),
        (
            "forged-record",
            login(&[Msg(b"hi\r\n[admin]: transfer\x00\x7f"), Close]),
        ),
        (
            "bracket-name",
            wire(&[Name(b"admin]: x"), Pass(b"A"), Msg(b"y")]),
        ),
        (
            "binary-msg",
            login(&[Msg(&[
                0xFF, 0xC3, 0x28, 0xE2, 0x82, 0x00, 0xF0, 0x9F, 0x98, 0x80,
            ])]),
        ),
        (
            "utf8-msg",
            login(&[Msg("héllo ✓ \u{2028}\u{202E}␦␍".as_bytes())]),
        ),
        ("bytes-after-close", login(&[Close, Msg(b"late")])),
        ("mid-frame-end", cut(login(&[]), &[3, 5, 0, b'h', b'e'])),
        ("mid-header-end", cut(login(&[]), &[3, 5])),
        ("long-msg", login(&[Msg(&[b'x'; 300]), Close])),
    ];
    let hello = plain[0].1.clone();
    let mut cases: Vec<StreamCase> = plain
        .into_iter()
        .map(|(name, bytes)| StreamCase {
            name: name.to_string(),
            sizes: Vec::new(),
            limit: None,
            bytes,
        })
        .collect();
    // Chunkings and limits on one stream: the fuzzer mutates them from here.
    for (name, sizes, limit) in [
        ("bytewise", &[1u16][..], None),
        ("split-header", &[1, 2, 7][..], None),
        ("limit-4", &[][..], Some(4)),
        ("limit-0", &[3][..], Some(0)),
    ] {
        cases.push(StreamCase {
            name: format!("hello-{name}"),
            sizes: sizes.to_vec(),
            limit,
            bytes: hello.clone(),
        });
    }
    cases
}

/// Names, messages and lines worth starting from for `record_codec`.
pub fn record_cases() -> Vec<RecordCase> {
    let case = |name: &str, pairs: &[(&[u8], &[u8])], line: &[u8]| RecordCase {
        name: name.to_string(),
        pairs: pairs
            .iter()
            .map(|(n, m)| (n.to_vec(), m.to_vec()))
            .collect(),
        line: line.to_vec(),
    };
    vec![
        case(
            "plain",
            &[(b"MyTestCase", b"Hello!")],
            b"[MyTestCase]: Hello!\r\n",
        ),
        case(
            "forged",
            &[(b"mallory", b"hi\r\n[admin]: transfer\x00\x7f")],
            "[mallory]: hi␍␊[admin]: transfer␀␡\r\n".as_bytes(),
        ),
        case(
            "bracket-name",
            &[(b"admin]: x", b"y")],
            "[admin␦5D: x]: y\r\n".as_bytes(),
        ),
        case(
            "binary",
            &[(
                b"u",
                &[0xFF, 0xC3, 0x28, 0xE2, 0x82, 0x00, 0xF0, 0x9F, 0x98, 0x80],
            )],
            "[u]: ␦FF␦C3(␦E2␦82␀😀\r\n".as_bytes(),
        ),
        case(
            "unicode",
            &[(
                b"u",
                "héllo ✓ 日本 \u{2028}\u{202E}\u{FEFF}␦␍\u{85}".as_bytes(),
            )],
            "[u]: ␦41\r\n".as_bytes(),
        ),
        case(
            "several",
            &[(b"a", b"one"), (b"b\0", b"\r"), (b"", b"")],
            b"[a]: one\r\n[a]: tw",
        ),
        case("bad-lines", &[], "[a]: ␦4\r\n[a] b\r\n\t\r\n".as_bytes()),
    ]
}

/// Event scripts for the `engine` target over a stream of `len` bytes: the
/// ordinary life of a connection (password verified, log writes), and each
/// of the ways it can go wrong.
pub fn engine_scripts(len: usize) -> Vec<(&'static str, Vec<u16>)> {
    use Step::*;
    let ok = Verdict { verified: true };
    let scripts: [(&str, &[Step]); 6] = [
        (
            "ordinary",
            &[
                Read(len),
                ok,
                LogDone { failed_after: None },
                ClientReads(len),
                Eof,
            ],
        ),
        (
            "password-refused",
            &[Read(len), Verdict { verified: false }, ClientReads(len)],
        ),
        (
            "log-fails",
            &[
                Read(len),
                ok,
                LogDone {
                    failed_after: Some(0),
                },
                ClientReads(len),
            ],
        ),
        (
            "shutdown-mid-frame",
            &[
                Read(len / 2),
                ok,
                Shutdown,
                FireAtDeadline,
                ClientReads(len),
            ],
        ),
        (
            "client-not-reading",
            &[
                Read(len),
                ok,
                LogDone { failed_after: None },
                Shutdown,
                Advance(600),
                Fire,
            ],
        ),
        (
            "timers",
            &[
                Read(len / 3),
                FireAtDeadline,
                ok,
                Read(len),
                FireAtDeadline,
                FireAtDeadline,
            ],
        ),
    ];
    scripts
        .into_iter()
        .map(|(name, steps)| (name, steps.iter().map(|s| s.encode()).collect()))
        .collect()
}

/// The committed seed corpus: [`stream_cases`] and [`record_cases`], plus
/// cases read elsewhere (spec/vectors).
pub fn seeds(extra_streams: &[StreamCase], extra_records: &[RecordCase]) -> Vec<Seed> {
    let mut out = Vec::new();
    for case in stream_cases().iter().chain(extra_streams) {
        for target in ["frame_parser", "session"] {
            out.push(Seed {
                target,
                name: format!("seed-{}", case.name),
                bytes: stream_input(&case.sizes, case.limit, &case.bytes),
            });
        }
    }
    // The event scripts multiply: the built-in streams are enough to start.
    for case in &stream_cases() {
        for (script_name, script) in engine_scripts(case.bytes.len()) {
            out.push(Seed {
                target: "engine",
                name: format!("seed-{}-{script_name}", case.name),
                bytes: stream_input(&script, case.limit, &case.bytes),
            });
        }
    }
    for case in record_cases().iter().chain(extra_records) {
        let pairs: Vec<(&[u8], &[u8])> = case.pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
        out.push(Seed {
            target: "record_codec",
            name: format!("seed-{}", case.name),
            bytes: record_input(&pairs, &case.line),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record::{decode_record, record};
    use crate::testkit::check::{engine, frame_parser, record_line, record_pairs, session};
    use crate::testkit::reference::model_run;
    use crate::vectors::{ClosedBy, SessionVector};

    #[test]
    fn every_seed_passes_every_check() {
        for case in stream_cases() {
            frame_parser(&case.bytes, &case.sizes, case.limit).unwrap();
            session(&case.bytes, &case.sizes, case.limit).unwrap();
            session(&case.bytes, &[5, 0, 1], Some(3)).unwrap();
            for (name, script) in engine_scripts(case.bytes.len()) {
                engine(&case.bytes, &script, case.limit)
                    .unwrap_or_else(|e| panic!("{} {name}: {e}", case.name));
            }
        }
        for case in record_cases() {
            let pairs: Vec<(&[u8], &[u8])> =
                case.pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
            record_pairs(&pairs).unwrap();
            record_line(&case.line).unwrap();
        }
    }

    /// The seed files on disk are what this code generates: regenerate them
    /// with `cargo test --lib -- --ignored regenerate_fuzz_corpus`.
    #[test]
    fn committed_seeds_are_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for seed in seeds(&[], &[]) {
            let path = root.join(seed.target).join(&seed.name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == seed.bytes,
                "{} is missing or stale: run `cargo test --lib -- --ignored regenerate_fuzz_corpus`",
                path.display()
            );
        }
    }

    /// One session vector of spec/vectors as a stream case, with what the
    /// vector expects.
    struct SessionCase {
        case: StreamCase,
        vector: SessionVector,
    }

    fn session_vectors() -> Vec<SessionCase> {
        crate::vectors::embedded_sessions()
            .unwrap()
            .into_iter()
            .map(|v| SessionCase {
                case: StreamCase {
                    name: format!("vector-{}", v.id),
                    sizes: Vec::new(),
                    limit: v
                        .max_payload
                        .map(|m| u16::try_from(m).expect("limit fits u16")),
                    bytes: v.client.clone(),
                },
                vector: v,
            })
            .collect()
    }

    /// Record vectors as record cases: each valid record with its own
    /// line, each invalid line alone.
    fn record_vectors() -> Vec<RecordCase> {
        let all = crate::vectors::embedded_records().unwrap();
        let valid = all.records.into_iter().map(|r| RecordCase {
            name: format!("vector-{}", r.id),
            pairs: vec![(r.name, r.message)],
            line: r.record.into_bytes(),
        });
        let invalid = all.invalid.into_iter().map(|r| RecordCase {
            name: format!("vector-invalid-{}", r.id),
            pairs: Vec::new(),
            line: r.line,
        });
        valid.chain(invalid).collect()
    }

    /// The model is checked against the spec's vectors, and every vector
    /// holds the fuzz targets' invariants.
    #[test]
    fn model_and_checks_agree_with_every_vector() {
        let all = session_vectors();
        assert!(all.len() >= 40, "only {} session vectors", all.len());
        for v in &all {
            let c = &v.case;
            let run = model_run(&c.bytes, c.limit);
            let rule = run
                .transactions
                .iter()
                .find_map(|t| t.step.rule)
                .map(str::to_string);
            assert_eq!(
                (
                    run.replies(),
                    run.log(),
                    run.closed_by_server,
                    run.mid_frame,
                    rule
                ),
                (
                    v.vector.replies.clone(),
                    v.vector.log_bytes(),
                    v.vector.closed_by == ClosedBy::Server,
                    v.vector.mid_frame,
                    v.vector.rule.clone()
                ),
                "{}",
                c.name
            );
            session(&c.bytes, &[7, 1], c.limit).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            frame_parser(&c.bytes, &[7, 1], c.limit).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        for case in record_vectors() {
            let pairs: Vec<(&[u8], &[u8])> =
                case.pairs.iter().map(|(n, m)| (&n[..], &m[..])).collect();
            record_pairs(&pairs).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            record_line(&case.line).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            match pairs.first() {
                Some(&(n, m)) => assert_eq!(record(n, m), case.line, "{}", case.name),
                None => assert!(decode_record(&case.line).is_err(), "{}", case.name),
            }
        }
    }

    /// Rewrites fuzz/corpus/*/seed-* from this module's cases and
    /// spec/vectors: `cargo test --lib -- --ignored regenerate_fuzz_corpus`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand after changing the seeds or spec/vectors"]
    fn regenerate_fuzz_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        // Vectors of a few kilobytes at most: a large seed would raise
        // libFuzzer's input size limit for every run.
        let streams: Vec<StreamCase> = session_vectors()
            .into_iter()
            .map(|v| v.case)
            .filter(|c| c.bytes.len() <= 4096)
            .collect();
        let all = seeds(&streams, &record_vectors());
        for target in ["frame_parser", "session", "engine", "record_codec"] {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("seed-")
                {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        for seed in &all {
            std::fs::write(root.join(seed.target).join(&seed.name), &seed.bytes).unwrap();
        }
        println!("wrote {} seeds under {}", all.len(), root.display());
    }
}
