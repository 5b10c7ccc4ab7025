//! Frames on the wire, client to server: parsing (incremental, panic-free) and encoding.
//!
//! `parse_frame` looks at a byte slice and says complete / partial / error, the
//! way httparse does; it never copies. Input that arrives in pieces is
//! reassembled by `assembler::FrameAssembler`.

use std::fmt;

/// Tag byte of a NAME frame.
pub const TAG_NAME: u8 = 1;
/// Tag byte of a PASS frame.
pub const TAG_PASS: u8 = 2;
/// Tag byte of a MSG frame.
pub const TAG_MSG: u8 = 3;
/// Tag byte of a CLOSE frame; the whole frame is this one byte.
pub const TAG_CLOSE: u8 = 4;

/// Bytes before the payload of a NAME, PASS or MSG frame: tag and u16 length.
pub const HEADER_LEN: usize = 3;
/// The largest payload a length field can announce.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;
/// The largest frame on the wire.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;

/// One client-to-server transaction, borrowing its payload from the input.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frame<'a> {
    Name(&'a [u8]),
    Pass(&'a [u8]),
    Msg(&'a [u8]),
    Close,
    /// A tag byte that is none of the above. The frame is this one byte: with an
    /// unknown tag there is no way to know whether a length follows.
    Unknown(u8),
}

impl<'a> Frame<'a> {
    /// The tag byte this frame starts with.
    pub fn tag(&self) -> u8 {
        match self {
            Frame::Name(_) => TAG_NAME,
            Frame::Pass(_) => TAG_PASS,
            Frame::Msg(_) => TAG_MSG,
            Frame::Close => TAG_CLOSE,
            Frame::Unknown(tag) => *tag,
        }
    }

    /// The payload, for the frames that carry one.
    pub fn payload(&self) -> Option<&'a [u8]> {
        match self {
            Frame::Name(p) | Frame::Pass(p) | Frame::Msg(p) => Some(p),
            Frame::Close | Frame::Unknown(_) => None,
        }
    }

    /// Number of bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        match self.payload() {
            Some(p) => HEADER_LEN + p.len(),
            None => 1,
        }
    }

    /// Appends the wire form of this frame to `out`.
    ///
    /// Fails when the payload does not fit the u16 length field; nothing is
    /// written then.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PayloadTooLong> {
        match self.payload() {
            //= spec/protocol.md#client-requirements
            //# A client MUST NOT send a payload longer than 65535 bytes.
            //= spec/protocol.md#client-requirements
            //# A client MUST set the length field to the number of payload bytes that follow it, counted in encoded bytes, not characters.
            Some(p) => {
                let len = u16::try_from(p.len()).map_err(|_| PayloadTooLong { len: p.len() })?;
                out.reserve(HEADER_LEN + p.len());
                out.push(self.tag());
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(p);
            }
            //= spec/protocol.md#client-requirements
            //# A client MUST send CLOSE as the single byte 0x04.
            None => out.push(self.tag()),
        }
        Ok(())
    }

    /// The wire form of this frame as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PayloadTooLong> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out)
    }
}

//= spec/protocol.md#diagnostics
//# At level info and above, diagnostics MUST NOT contain message contents or
//# passwords.
// Payloads are shown as lengths, so no diagnostic can print one by accident.
impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Name(p) => write!(f, "Name({} bytes)", p.len()),
            Frame::Pass(p) => write!(f, "Pass({} bytes)", p.len()),
            Frame::Msg(p) => write!(f, "Msg({} bytes)", p.len()),
            Frame::Close => write!(f, "Close"),
            Frame::Unknown(t) => write!(f, "Unknown(0x{t:02x})"),
        }
    }
}

/// A payload longer than the u16 length field can announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payload of {len} bytes is longer than the protocol's limit of 65535 bytes; split it into several messages")]
pub struct PayloadTooLong {
    pub len: usize,
}

/// What `parse_frame` found at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame, taking the first `len` bytes of the input.
    Complete { frame: Frame<'a>, len: usize },
    /// The input is the beginning of a frame; at least `needed` more bytes
    /// must arrive before it is complete.
    Partial { needed: usize },
}

/// Errors of a parser that was given a limit lower than the protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame announces a payload of {len} bytes, over this server's limit of {max} bytes")]
    PayloadOverLimit { len: usize, max: usize },
}

/// Parses the frame at the start of `input`, reading at most one frame.
///
/// Payloads announcing more than `max_payload` bytes are refused as soon as
/// the length field is seen, before any payload is buffered.
pub fn parse_frame_limited<'a>(
    input: &'a [u8],
    max_payload: usize,
) -> Result<Parsed<'a>, FrameError> {
    let Some((&tag, rest)) = input.split_first() else {
        return Ok(Parsed::Partial { needed: 1 });
    };
    let make: fn(&'a [u8]) -> Frame<'a> = match tag {
        TAG_NAME => Frame::Name,
        TAG_PASS => Frame::Pass,
        TAG_MSG => Frame::Msg,
        //= spec/protocol.md#close
        //# A CLOSE frame MUST be the single byte 0x04, with no length field
        //# and no payload.
        TAG_CLOSE => {
            return Ok(Parsed::Complete {
                frame: Frame::Close,
                len: 1,
            })
        }
        //= spec/protocol.md#unknown-tags
        //# A tag byte other than 1, 2, 3 or 4 MUST be treated as a complete frame
        //# of one byte.
        other => {
            return Ok(Parsed::Complete {
                frame: Frame::Unknown(other),
                len: 1,
            })
        }
    };
    let Some(len_bytes) = rest.get(..2) else {
        return Ok(Parsed::Partial {
            needed: HEADER_LEN - input.len(),
        });
    };
    //= spec/protocol.md#frame
    //# The length field MUST be read as an unsigned 16-bit integer in
    //# little-endian byte order.
    let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
    //= spec/protocol.md#limits
    //# A server with a lower payload limit MUST reject a frame whose length field exceeds that limit as soon as the length field is read, without reading the payload.
    if len > max_payload {
        return Err(FrameError::PayloadOverLimit {
            len,
            max: max_payload,
        });
    }
    let body = &rest[2..];
    match body.get(..len) {
        Some(payload) => Ok(Parsed::Complete {
            frame: make(payload),
            len: HEADER_LEN + len,
        }),
        None => Ok(Parsed::Partial {
            needed: len - body.len(),
        }),
    }
}

/// Parses the frame at the start of `input` with the protocol's own limit,
/// which every length field satisfies: this never fails.
//= spec/protocol.md#limits
//# The server MUST accept payloads of up to 65535 bytes unless it was configured with a lower payload limit.
pub fn parse_frame(input: &[u8]) -> Parsed<'_> {
    match parse_frame_limited(input, MAX_PAYLOAD_LEN) {
        Ok(parsed) => parsed,
        // A u16 length cannot exceed MAX_PAYLOAD_LEN.
        Err(FrameError::PayloadOverLimit { .. }) => unreachable!("u16 length over u16::MAX"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    //= spec/protocol.md#diagnostics
    //= type=test
    //# At level info and above, diagnostics MUST NOT contain message contents or
    //# passwords.
    #[test]
    fn a_frame_shows_its_length_never_its_payload() {
        let shown = [
            format!("{:?}", Frame::Name(b"alice")),
            format!("{:?}", Frame::Pass(b"hunter2")),
            format!("{:?}", Frame::Msg(b"top secret")),
            format!("{:?}", Frame::Close),
            format!("{:?}", Frame::Unknown(0xAB)),
        ];
        assert_eq!(
            shown,
            [
                "Name(5 bytes)",
                "Pass(7 bytes)",
                "Msg(10 bytes)",
                "Close",
                "Unknown(0xab)"
            ]
        );
    }

    fn valid_frames() -> Vec<Vec<u8>> {
        vec![
            Frame::Name(b"MyUser").to_bytes().unwrap(),
            Frame::Pass(b"A").to_bytes().unwrap(),
            Frame::Msg(b"Hello!").to_bytes().unwrap(),
            Frame::Msg(b"").to_bytes().unwrap(),
            Frame::Msg(&[0u8; 300]).to_bytes().unwrap(),
            Frame::Close.to_bytes().unwrap(),
        ]
    }

    //= spec/protocol.md#frame
    //= type=test
    //# The length field MUST be read as an unsigned 16-bit integer in
    //# little-endian byte order.
    #[test]
    fn length_is_little_endian() {
        let bytes = [TAG_MSG, 0x02, 0x00, b'h', b'i', 0xAA];
        assert_eq!(
            parse_frame(&bytes),
            Parsed::Complete {
                frame: Frame::Msg(b"hi"),
                len: 5
            }
        );
        let bytes = [TAG_MSG, 0x00, 0x01];
        assert_eq!(parse_frame(&bytes), Parsed::Partial { needed: 256 });
    }

    #[test]
    fn every_strict_prefix_is_partial() {
        for frame in valid_frames() {
            for cut in 0..frame.len() {
                match parse_frame(&frame[..cut]) {
                    Parsed::Partial { needed } => {
                        assert!(needed >= 1 && needed <= frame.len() - cut)
                    }
                    other => panic!("prefix {cut} of {frame:?} gave {other:?}"),
                }
            }
            match parse_frame(&frame) {
                Parsed::Complete { len, .. } => assert_eq!(len, frame.len()),
                other => panic!("{frame:?} gave {other:?}"),
            }
        }
    }

    //= spec/protocol.md#close
    //= type=test
    //# A CLOSE frame MUST be the single byte 0x04, with no length field
    //# and no payload.
    #[test]
    fn close_is_one_byte() {
        assert_eq!(
            parse_frame(&[TAG_CLOSE, 0x05, 0x00]),
            Parsed::Complete {
                frame: Frame::Close,
                len: 1
            }
        );
    }

    //= spec/protocol.md#unknown-tags
    //= type=test
    //# A tag byte other than 1, 2, 3 or 4 MUST be treated as a complete frame
    //# of one byte.
    #[test]
    fn unknown_tags_are_one_byte_frames() {
        for tag in [0u8, 5, 6, 7, 0x7F, 0x80, 0xFF] {
            assert_eq!(
                parse_frame(&[tag, 1, 0, b'x']),
                Parsed::Complete {
                    frame: Frame::Unknown(tag),
                    len: 1
                }
            );
        }
    }

    //= spec/protocol.md#limits
    //= type=test
    //# A server with a lower payload limit MUST reject a frame whose length field exceeds that limit as soon as the length field is read, without reading the payload.
    //= spec/protocol.md#limits
    //= type=test
    //# A server MAY be configured with a payload limit lower than 65535 bytes.
    #[test]
    fn limit_refuses_before_buffering_payload() {
        let header = [TAG_MSG, 0x10, 0x00];
        assert_eq!(
            parse_frame_limited(&header, 15),
            Err(FrameError::PayloadOverLimit { len: 16, max: 15 })
        );
        assert!(matches!(
            parse_frame_limited(&header, 16),
            Ok(Parsed::Partial { needed: 16 })
        ));
    }

    //= spec/protocol.md#limits
    //= type=test
    //# The server MUST accept payloads of up to 65535 bytes unless it was configured with a lower payload limit.
    //= spec/protocol.md#client-requirements
    //= type=test
    //# A client MUST NOT send a payload longer than 65535 bytes.
    #[test]
    fn maximal_payload_roundtrips() {
        let payload = vec![b'x'; MAX_PAYLOAD_LEN];
        let bytes = Frame::Msg(&payload).to_bytes().unwrap();
        assert_eq!(bytes.len(), MAX_FRAME_LEN);
        assert_eq!(&bytes[..3], &[TAG_MSG, 0xFF, 0xFF]);
        assert_eq!(
            parse_frame(&bytes),
            Parsed::Complete {
                frame: Frame::Msg(&payload),
                len: MAX_FRAME_LEN
            }
        );
        let too_long = vec![b'x'; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            Frame::Msg(&too_long).to_bytes(),
            Err(PayloadTooLong {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
    }
}
