//! Where accepted messages go: the seam between the connections and what
//! carries out the engine's Append effect. The file sink is the log writer
//! (group commit, one `write(2)` per group); the NATS sink publishes to a
//! replicated JetStream stream. A connection encodes its batch as the sink
//! asks ([`Encoding`]), stages it, and awaits its outcome; for the file
//! sink each of these is one `match` away from the log writer's own call.

use std::net::SocketAddr;

use crate::proto::LogFormat;

use super::log_writer::{self, AppendError, LogWriter};
#[cfg(feature = "nats")]
use super::nats::{Batch, NatsBatchError, NatsSink};

/// How a batch's messages are encoded before they are staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Log records in this format, as the file holds them.
    Log(LogFormat),
    /// Each name and message as they are (`nats::encode_message`).
    #[cfg(feature = "nats")]
    Messages,
}

/// What carries out appends.
pub(crate) enum Sink {
    File {
        log: LogWriter,
        format: LogFormat,
    },
    #[cfg(feature = "nats")]
    Nats(std::sync::Arc<NatsSink>),
}

/// A batch handed to the sink, stored already or on its way.
#[must_use = "the messages are acknowledged only once `outcome` is Ok"]
pub(crate) enum Staged {
    File(log_writer::Staged),
    #[cfg(feature = "nats")]
    // Boxed: a batch is large, and every connection task holds a Staged
    // while it waits.
    Nats(Box<Batch>),
}

/// Why a batch was not appended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    File(#[from] AppendError),
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(#[from] NatsBatchError),
}

impl SinkError {
    /// How many of the batch's first messages were stored all the same: a
    /// failed file write leaves none, a replicated stream may have some.
    pub fn stored(&self) -> u64 {
        match self {
            SinkError::File(_) => 0,
            #[cfg(feature = "nats")]
            SinkError::Nats(e) => e.stored,
        }
    }
}

impl Sink {
    pub(crate) fn encoding(&self) -> Encoding {
        match self {
            Sink::File { format, .. } => Encoding::Log(*format),
            #[cfg(feature = "nats")]
            Sink::Nats(_) => Encoding::Messages,
        }
    }

    /// Hands over a batch of `count` messages encoded as [`Sink::encoding`]
    /// says. The file sink writes them before this returns when no write is
    /// in progress; the NATS sink sends nothing before `outcome`.
    #[cfg_attr(not(feature = "nats"), allow(unused_variables))]
    pub(crate) fn stage(&self, encoded: &[u8], count: u64, peer: SocketAddr) -> Staged {
        match self {
            Sink::File { log, .. } => Staged::File(log.stage(encoded)),
            #[cfg(feature = "nats")]
            Sink::Nats(nats) => Staged::Nats(Box::new(nats.stage(encoded, count, peer))),
        }
    }

    /// Waits until the staged batch is appended: once this is `Ok`, every
    /// message of it is in the log or the stream.
    pub(crate) async fn outcome(&self, staged: Staged) -> Result<(), SinkError> {
        match (self, staged) {
            (Sink::File { log, .. }, Staged::File(staged)) => Ok(log.outcome(staged).await?),
            #[cfg(feature = "nats")]
            // Boxed: the publishing future is large, and the connection task
            // that awaits it must stay small.
            (Sink::Nats(nats), Staged::Nats(batch)) => Ok(Box::pin(nats.store(*batch)).await?),
            #[cfg(feature = "nats")]
            _ => unreachable!("a batch is staged with the sink that awaits it"),
        }
    }
}
