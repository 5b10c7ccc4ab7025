//! The sans-IO core: frames, the state machine, log records, and a session
//! runner that ties them together over an in-memory log. Depends on `std`,
//! `bytes` and `thiserror` only: no tokio, no clock, no sockets.

pub mod frame;
pub mod machine;
pub mod record;
pub mod session;

pub use frame::{parse_frame, parse_frame_limited, Decoder, Frame, FrameError, Parsed};
pub use machine::{fail, step, Effect, Response, State, Violation, ACK, NAK};
pub use record::{decode_record, encode_record, record, records, Record, RecordError};
pub use session::{Session, Transcript};
