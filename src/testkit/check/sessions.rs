//! The session's invariants: the real engine, fed in any chunking, against
//! the reference state table.

use super::records::record_pairs;
use super::{chunks, ensure, Broken, Checked, Hex, ALL_AT_ONCE, BYTEWISE};
use crate::proto::frame;
use crate::proto::machine::{ACK, NAK};
use crate::proto::record::{record, records, Record};
use crate::testkit::reference::{model_run, ModelRun, ModelState};
use crate::testkit::session::{MemorySession, SessionTranscript};

/// Runs the real engine over `bytes` in the chunking `sizes`.
pub fn run_session(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> SessionTranscript {
    let mut session = MemorySession::new(limit);
    for chunk in chunks(bytes, sizes) {
        session.feed(chunk);
    }
    session.finish()
}

/// `run_session`, checking after every chunk that the engine buffers less
/// than one maximal frame.
fn run_bounded_session(
    bytes: &[u8],
    sizes: &[u16],
    limit: Option<u16>,
) -> Result<SessionTranscript, Broken> {
    let mut session = MemorySession::new(limit);
    let cap = frame::HEADER_LEN + limit.map_or(frame::MAX_PAYLOAD_LEN, usize::from) - 1;
    for chunk in chunks(bytes, sizes) {
        session.feed(chunk);
        ensure(
            session.buffered() <= cap,
            "a session buffers less than one maximal frame",
            || {
                format!(
                    "buffered {} > {cap}, chunk sizes {sizes:?}",
                    session.buffered()
                )
            },
        )?;
    }
    Ok(session.finish())
}

/// The session's invariants over `bytes` fed in the chunking `sizes`, with
/// a decoder limited to `limit` payload bytes if given:
///
/// - replies are only 0x00 and 0xFF, exactly one per completed transaction,
///   due as soon as the transaction's last byte arrived;
/// - no append before a successful PASS: a record is written only by a MSG
///   in state P, and it is the record of that MSG under the PASSed name;
/// - nothing is processed after a 0xFF or a CLOSE;
/// - the state moves only along the spec's table ([`model_step`]), with the
///   rule the table names for each rejection;
/// - the transcript (replies, rules, log, close, ignored bytes, end of
///   stream mid-frame) is identical for every chunking and is the model's;
/// - the session buffers at most one maximal frame;
/// - every record written holds the [`record_pairs`] invariants (one line,
///   decodes back) and the log reads back as the appended messages.
pub fn session(bytes: &[u8], sizes: &[u16], limit: Option<u16>) -> Checked {
    let model = model_run(bytes, limit);
    check_bytewise(bytes, limit, &model)?;
    let want = run_session(bytes, BYTEWISE, limit);
    for chunking in [sizes, ALL_AT_ONCE] {
        let got = run_bounded_session(bytes, chunking, limit)?;
        ensure(
            got == want,
            "the transcript is the same for every chunking",
            || format!("chunk sizes {chunking:?}: {got:?}; one byte at a time: {want:?}"),
        )?;
    }
    let model_rule = model.transactions.iter().find_map(|t| t.step.rule);
    ensure(
        want.replies == model.replies()
            && want.log == model.log()
            && want.rule == model_rule
            && want.closed_by_server == model.closed_by_server
            && want.ignored_after_close == model.ignored_after_close as u64
            && want.mid_frame == model.mid_frame,
        "the session ends as the model does",
        || format!("real {want:?}; model {model:?}"),
    )?;
    // The records the session wrote are records: one line each, and so on.
    let appended = model.appended();
    let pairs: Vec<(&[u8], &[u8])> = appended.iter().map(|(n, m)| (&n[..], &m[..])).collect();
    record_pairs(&pairs)?;
    let decoded: Result<Vec<_>, _> = records(&want.log)
        .map(|r| r.map(|Record { name, message }| (name, message)))
        .collect();
    ensure(
        decoded.as_ref() == Ok(&model.appended()),
        "the log reads back as the appended messages",
        || format!("{decoded:?}"),
    )
}

/// Feeds one byte at a time, so at most one transaction completes per byte,
/// and checks each transaction as it happens.
fn check_bytewise(bytes: &[u8], limit: Option<u16>, model: &ModelRun) -> Checked {
    let mut session = MemorySession::new(limit);
    let mut expected = model.transactions.iter().peekable();
    for (i, byte) in bytes.iter().enumerate() {
        let before = ModelState::of(session.state());
        let (replies, log) = (session.replies().len(), session.log().len());
        session.feed(std::slice::from_ref(byte));
        let after = ModelState::of(session.state());
        let new_replies = &session.replies()[replies..];
        let appended = &session.log()[log..];
        // The engine ends at its first 0xFF, so a new one carries the rule.
        let new_rule = if new_replies.contains(&NAK) {
            session.rule()
        } else {
            None
        };
        let at = i + 1;
        ensure(
            new_replies.iter().all(|&b| b == ACK || b == NAK),
            "replies are only 0x00 and 0xFF",
            || format!("after byte {at}: replies {}", Hex(new_replies)),
        )?;
        ensure(
            before != ModelState::Closed
                || (new_replies.is_empty() && appended.is_empty() && after == before),
            "nothing is processed after 0xFF or CLOSE",
            || {
                format!(
                    "after byte {at}: replies {}, {} logged",
                    Hex(new_replies),
                    appended.len()
                )
            },
        )?;
        ensure(
            appended.is_empty() || matches!(before, ModelState::Authenticated(_)),
            "no append before a successful PASS",
            || {
                format!(
                    "after byte {at}, in state {}: {}",
                    before.label(),
                    Hex(appended)
                )
            },
        )?;
        let due = expected.next_if(|tx| tx.due == at);
        let Some(tx) = due else {
            ensure(
                new_replies.is_empty() && appended.is_empty() && after == before,
                "only a completed transaction changes anything",
                || {
                    format!(
                        "after byte {at}: {} -> {}, replies {}, {} logged",
                        before.label(),
                        after.label(),
                        Hex(new_replies),
                        appended.len()
                    )
                },
            )?;
            continue;
        };
        let want_log = tx
            .step
            .append
            .as_ref()
            .map_or_else(Vec::new, |(n, m)| record(n, m));
        let replies_ok = new_replies == tx.step.reply.as_slice() && new_rule == tx.step.rule;
        ensure(
            replies_ok,
            "exactly one reply per completed transaction, with the table's rule",
            || {
                format!(
                    "after byte {at}, state {}: got {} ({new_rule:?}), table says {:?}",
                    before.label(),
                    Hex(new_replies),
                    tx.step
                )
            },
        )?;
        ensure(
            before == tx.before && after == tx.step.next && appended == want_log,
            "the state moves only along the spec's table",
            || {
                format!(
                    "after byte {at}: {} -> {} logging {}; table: {} -> {} logging {}",
                    before.label(),
                    after.label(),
                    Hex(appended),
                    tx.before.label(),
                    tx.step.next.label(),
                    Hex(&want_log)
                )
            },
        )?;
    }
    ensure(
        expected.peek().is_none(),
        "exactly one reply per completed transaction, with the table's rule",
        || {
            format!(
                "transactions never answered: {:?}",
                expected.collect::<Vec<_>>()
            )
        },
    )
}
