//! The frame parser's and the frame assembler's invariants.

use std::ops::ControlFlow;

use super::{chunks, ensure, Broken, Checked, Hex, ALL_AT_ONCE, BYTEWISE};
use crate::proto::assembler::FrameAssembler;
use crate::proto::frame::{self, parse_frame, parse_frame_limited, FrameError, Parsed};
use crate::testkit::reference::{reference_split, RefEnd, RefFrame};

/// What the assembler produced from one chunking of a stream.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    /// (tag, payload, re-encoded bytes) of each frame.
    frames: Vec<(u8, Option<Vec<u8>>, Vec<u8>)>,
    /// Bytes still held at the end, or the limit error.
    end: Result<usize, FrameError>,
}

fn decode_in_chunks(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> Result<Decoded, Broken> {
    let max = limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    let mut assembler = FrameAssembler::new(max);
    let cap = assembler.capacity_limit();
    let expected_cap = frame::HEADER_LEN + max - 1;
    ensure(
        cap == expected_cap,
        "the assembler holds less than one maximal frame",
        || format!("capacity_limit {cap}, expected {expected_cap} for limit {limit:?}"),
    )?;
    let mut frames = Vec::new();
    let mut failed: Option<Result<FrameError, Broken>> = None;
    for chunk in chunks(bytes, sizes) {
        let fed = assembler.feed(chunk, |f| {
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    failed = Some(Ok(e));
                    return ControlFlow::Break(());
                }
            };
            let wire = match f.to_bytes() {
                Ok(wire) => wire,
                Err(e) => {
                    failed = Some(Err(Broken {
                        invariant: "every parsed frame re-encodes",
                        detail: e.to_string(),
                    }));
                    return ControlFlow::Break(());
                }
            };
            if wire.len() != f.encoded_len() {
                failed = Some(Err(Broken {
                    invariant: "encoded_len is the wire length",
                    detail: format!("{f:?}: encoded_len {} != {}", f.encoded_len(), wire.len()),
                }));
                return ControlFlow::Break(());
            }
            frames.push((f.tag(), f.payload().map(<[u8]>::to_vec), wire));
            ControlFlow::Continue(())
        });
        ensure(
            assembler.buffered() <= cap,
            "the assembler holds less than one maximal frame",
            || format!("buffered {} > {cap}", assembler.buffered()),
        )?;
        match failed.take() {
            Some(Err(broken)) => return Err(broken),
            Some(Ok(e)) => {
                return Ok(Decoded {
                    frames,
                    end: Err(e),
                })
            }
            None => ensure(fed.left == 0, "the assembler takes all it is given", || {
                format!("{} bytes of a chunk left untaken", fed.left)
            })?,
        }
    }
    ensure(
        assembler.is_at_boundary() == (assembler.buffered() == 0),
        "is_at_boundary means nothing buffered",
        || format!("buffered {}", assembler.buffered()),
    )?;
    Ok(Decoded {
        frames,
        end: Ok(assembler.buffered()),
    })
}

/// The frame parser's invariants over `bytes` fed in the chunking `sizes`
/// (see [`chunks`]), with the protocol's limit or a lower `limit`:
///
/// - it never panics (a panic propagates to the caller);
/// - the engine's `FrameAssembler` holds less than one maximal frame
///   (`frame::MAX_FRAME_LEN`, or header + `limit`) and takes every byte;
/// - the frames are those of the reference splitter, identical for the
///   given chunking, all at once, and one byte at a time;
/// - every frame re-encodes to exactly the bytes it was parsed from, so the
///   re-encoded frames concatenated are the consumed input;
/// - `parse_frame` on the whole input agrees, and every strict prefix of a
///   frame is `Partial` with `needed` exact once the length is known;
/// - an over-limit length is refused at its header, with the right numbers.
pub fn frame_parser(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> Checked {
    let max = limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    let (want, want_end) = reference_split(bytes, max);
    let want_frames: Vec<_> = want
        .iter()
        .map(|f| (f.tag, f.payload.map(<[u8]>::to_vec), f.wire.to_vec()))
        .collect();
    let want_decoded = Decoded {
        frames: want_frames,
        end: match want_end {
            RefEnd::Clean => Ok(0),
            RefEnd::Partial { from, .. } => Ok(bytes.len() - from),
            RefEnd::OverLimit { len, .. } => Err(FrameError::PayloadOverLimit { len, max }),
        },
    };
    for chunking in [sizes, ALL_AT_ONCE, BYTEWISE] {
        let got = decode_in_chunks(bytes, chunking, limit)?;
        ensure(
            got == want_decoded,
            "frames are the spec's, identical for every chunking",
            || {
                format!(
                    "chunk sizes {chunking:?}, limit {limit:?}: got {} frames ending {:?}, \
                     reference {} frames ending {:?}; first difference at frame {}",
                    got.frames.len(),
                    got.end,
                    want_decoded.frames.len(),
                    want_decoded.end,
                    got.frames
                        .iter()
                        .zip(&want_decoded.frames)
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.frames.len().min(want_decoded.frames.len())),
                )
            },
        )?;
        let consumed = match want_end {
            RefEnd::Clean => bytes.len(),
            RefEnd::Partial { from, .. } => from,
            RefEnd::OverLimit { at, .. } => at,
        };
        let reencoded: Vec<u8> = got.frames.iter().flat_map(|f| f.2.clone()).collect();
        ensure(
            reencoded == bytes[..consumed],
            "re-encoded frames are the consumed input",
            || format!("{} != {}", Hex(&reencoded), Hex(&bytes[..consumed])),
        )?;
    }
    check_parse_frame(bytes, limit, &want, want_end)
}

fn check_parse_frame(
    bytes: &[u8],
    limit: Option<u16>,
    want: &[RefFrame<'_>],
    want_end: RefEnd,
) -> Checked {
    let max = limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from);
    let parse = |input| match limit {
        Some(_) => parse_frame_limited(input, max),
        None => Ok(parse_frame(input)),
    };
    let empty = parse(&[]);
    ensure(
        empty == Ok(Parsed::Partial { needed: 1 }),
        "empty input needs one byte",
        || format!("{empty:?}"),
    )?;
    let mut at = 0;
    let mut seen = 0;
    while at < bytes.len() {
        let got = parse(&bytes[at..]);
        match (got, want.get(seen)) {
            (Ok(Parsed::Complete { frame, len }), Some(w)) => {
                ensure(
                    frame.tag() == w.tag && frame.payload() == w.payload && at + len == w.end,
                    "parse_frame finds the spec's frames",
                    || format!("at {at}: got {frame:?} of {len} bytes, reference {w:?}"),
                )?;
                // The frame minus its last byte must wait for exactly that byte.
                let short = parse(&bytes[at..at + len - 1]);
                ensure(
                    short == Ok(Parsed::Partial { needed: 1 }),
                    "every strict prefix of a frame is partial",
                    || format!("at {at}, frame of {len} bytes less one: {short:?}"),
                )?;
                at += len;
                seen += 1;
            }
            (Ok(Parsed::Partial { needed }), None) => {
                let RefEnd::Partial { from, total } = want_end else {
                    return Err(Broken {
                        invariant: "parse_frame finds the spec's frames",
                        detail: format!("at {at}: partial, reference ends {want_end:?}"),
                    });
                };
                let exact = total.unwrap_or(frame::HEADER_LEN) - (bytes.len() - from);
                return ensure(
                    from == at && needed == exact,
                    "partial says how many bytes are missing",
                    || format!("at {at}: needed {needed}, reference {want_end:?}"),
                );
            }
            (Err(FrameError::PayloadOverLimit { len, max: m }), None) => {
                return ensure(
                    want_end == RefEnd::OverLimit { at, len } && m == max,
                    "an over-limit length is refused at its header",
                    || format!("at {at}: got len {len} max {m}, reference {want_end:?}"),
                );
            }
            (got, w) => {
                return Err(Broken {
                    invariant: "parse_frame finds the spec's frames",
                    detail: format!("at {at}: got {got:?}, reference {w:?} then {want_end:?}"),
                })
            }
        }
    }
    ensure(
        seen == want.len() && want_end == RefEnd::Clean,
        "parse_frame finds the spec's frames",
        || {
            format!(
                "input ended after {seen} frames, reference {} then {want_end:?}",
                want.len()
            )
        },
    )
}
