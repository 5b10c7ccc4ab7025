//! Throughput of the server's per-message work: parsing frames out of a read
//! buffer and encoding log records. `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msglog::proto::frame::MAX_PAYLOAD_LEN;
use msglog::proto::{encode_record, parse_frame_limited, Frame, Parsed};

/// Printable ASCII, the common case (copied unescaped).
fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Text with non-ASCII UTF-8, a control byte and an invalid byte every few
/// characters: the escaping slow path.
fn mixed(len: usize) -> Vec<u8> {
    let pattern = "héllo wörld ✓\t\u{202E}\u{0}".as_bytes();
    let mut out: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
    for b in out.iter_mut().step_by(37) {
        *b = 0xFF;
    }
    out
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_frame");
    for size in [16usize, 64, 1024, 65_535] {
        // About 64 KiB of back-to-back MSG frames, as one read would hold.
        let payload = ascii(size);
        let count = (65_536 / (size + 3)).max(1);
        let mut input = Vec::new();
        for _ in 0..count {
            Frame::Msg(&payload).encode(&mut input).unwrap();
        }
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new("msg", size), &input, |b, input| {
            b.iter(|| {
                let mut rest = &input[..];
                let mut frames = 0usize;
                while let Ok(Parsed::Complete { frame, len }) =
                    parse_frame_limited(rest, MAX_PAYLOAD_LEN)
                {
                    black_box(frame);
                    rest = &rest[len..];
                    frames += 1;
                }
                assert_eq!(frames, count);
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_record");
    let name = b"bench-client-17";
    for size in [16usize, 64, 1024, 65_535] {
        for (kind, message) in [("ascii", ascii(size)), ("mixed", mixed(size))] {
            group.throughput(Throughput::Bytes(message.len() as u64));
            let mut out = Vec::with_capacity(5 * size + 64);
            group.bench_with_input(BenchmarkId::new(kind, size), &message, |b, message| {
                b.iter(|| {
                    out.clear();
                    encode_record(&mut out, name, black_box(message));
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
