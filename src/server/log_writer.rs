//! The one owner of the log file, with group commit.
//!
//! A connection stages its batch of encoded records. If no write is in
//! progress, that connection leads: it writes everything staged with one
//! `write(2)` on its own thread, with no hand-off to another thread. When it
//! has been alone lately it writes at once (the fastest for one client);
//! when connections have been staging concurrently it first yields once, so
//! that the other connections ready on its thread stage too and one write
//! carries them all. Batches staged while a write is in progress wait and go
//! out together in the next single write, which the current leader makes
//! before it lets go; each waiting connection is woken once the write holding
//! its records returned. The write runs on a Tokio worker: a page-cache write
//! takes microseconds, as in the original single-threaded server.
//! With `fsync`, a dedicated keeper thread is the only leader, so that the
//! slow `fdatasync` never blocks a connection's thread. The keeper also
//! reopens the log (SIGHUP) and makes the final sync when the last handle is
//! dropped. A failed or short write is cut back off the file, so the log never
//! keeps a partial record.
//!
//! Nothing here allocates per batch: the staging buffers and waker lists are
//! swapped back and forth and reused.
//!
//! The hand-off between leaders, waiters and the keeper is model-checked with
//! loom (`loom_tests` below). With `MSGLOG_LOOM=1` (build.rs turns it into
//! `cfg(msglog_loom)` for this crate's tests) the locks, the condition
//! variable, the handle count and the keeper thread are loom's, and loom runs
//! two or three writers and the keeper through every interleaving up to a
//! bound on preemptions, checking that no append is acknowledged before its
//! records are in the file (with fsync, synced), none is written twice or
//! lost, no waiter is left behind and a failed group fails every stager:
//!
//! ```text
//! MSGLOG_LOOM=1 cargo test --lib log_writer::loom
//! ```
//!
//! Only those tests are meant to run in that build: the others that start a
//! writer would use loom's primitives outside a model.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::proto::LogFormat;

use super::log_file::{open_log, FileId};
pub use super::log_file::{OpenError, Recovery};
use super::stats::LogStats;
use sync::{thread, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// The primitives the hand-off is made of: std's, or in the loom build of
/// the tests loom's, so that the same code is model-checked. `Arc` here is
/// only the one that holds `Core`; errors and the counters keep std's, as
/// nothing is synchronised through them.
#[cfg(not(all(test, msglog_loom)))]
mod sync {
    pub(super) use std::sync::atomic::{AtomicUsize, Ordering};
    pub(super) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(super) use std::thread;
}
#[cfg(all(test, msglog_loom))]
mod sync {
    pub(super) use loom::sync::atomic::{AtomicUsize, Ordering};
    pub(super) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(super) use loom::thread;
}

/// The keeper thread, to join after the last `LogWriter` is dropped.
pub type KeeperThread = thread::JoinHandle<()>;

/// A leader writes at most this many groups in a row before handing over, so
/// that its own connection is not kept waiting by everyone else's records.
#[cfg(not(all(test, msglog_loom)))]
const MAX_ROUNDS: usize = 4;
/// Under loom two, so that three writers reach the hand-off (and two the
/// second round).
#[cfg(all(test, msglog_loom))]
const MAX_ROUNDS: usize = 2;
/// A stage waits for other connections to stage too (instead of writing at
/// once) while groups have averaged more than 1.25 stages (in sixteenths).
const GATHER_ABOVE: u32 = 20;
/// Staging buffers larger than this are freed after use instead of kept.
const KEEP_BUFFER: usize = 1 << 20;

/// Why an append was not done. Nothing of the batch is in the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("writing to the log failed: {0}")]
    Io(Arc<io::Error>),
}

/// Options of the log file.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub path: PathBuf,
    pub format: LogFormat,
    /// `fdatasync` after each group write, before any of its acks.
    pub fsync: bool,
}

type ReopenResult = Result<(), Arc<io::Error>>;

/// A handle to the log; cheap to clone. The keeper thread ends (after a final
/// sync) when every handle is dropped.
pub struct LogWriter {
    core: sync::Arc<Core>,
}

struct Core {
    inner: Mutex<Inner>,
    /// Wakes the keeper: records to write (with fsync), a reopen, the end.
    keeper: Condvar,
    /// Only the current leader uses the file, so this lock is never waited
    /// for; it lets the leader write without holding `inner`.
    file: Mutex<FileState>,
    /// Live `LogWriter`s (a `LogReopener` does not count).
    handles: AtomicUsize,
    options: LogOptions,
    /// Failing state, errors, reopens and write times, for metrics.
    stats: Arc<LogStats>,
}

struct Inner {
    /// Records of the next group, generation `staged_gen`.
    staged: Vec<u8>,
    /// Stage calls whose records are in `staged`.
    staged_count: usize,
    staged_gen: u64,
    /// Every generation up to this one has been written, or has failed.
    done_gen: u64,
    /// A leader is writing (or reopening): nobody else may.
    writing: bool,
    /// A connection has claimed the next write and lets the other ready
    /// connections stage first; it leads when its task is polled again.
    lead_claimed: bool,
    /// Recent stages per group, in sixteenths (a moving average): above one,
    /// connections are staging concurrently and a leader waits for the others.
    group_size: u32,
    /// Tasks waiting for generation `staged_gen`, and for the one being written.
    staged_waiters: Vec<Waker>,
    writing_waiters: Vec<Waker>,
    /// An emptied staging buffer, kept for the next swap.
    spare: Vec<u8>,
    /// Failed generations some of whose stagers have not looked yet.
    failures: Vec<Failure>,
    reopens: Vec<oneshot::Sender<ReopenResult>>,
    keeper_idle: bool,
    /// Every `LogWriter` is gone.
    closed: bool,
}

struct Failure {
    gen: u64,
    error: AppendError,
    unseen: usize,
}

struct FileState {
    file: Box<dyn LogFile>,
    /// File length after the last successful write: where to cut back to.
    len: u64,
    /// True while appends fail, so an episode is reported once.
    failing: bool,
}

impl Clone for LogWriter {
    fn clone(&self) -> Self {
        self.core.handles.fetch_add(1, Ordering::Relaxed);
        LogWriter {
            core: self.core.clone(),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.core.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut inner = self.core.lock();
            inner.closed = true;
            drop(inner);
            self.core.keeper.notify_one();
        }
    }
}

impl LogWriter {
    /// Opens the log (recovering a torn tail) and starts the keeper thread.
    pub fn open(
        options: LogOptions,
    ) -> Result<(LogWriter, Option<Recovery>, KeeperThread), OpenError> {
        let (file, recovery) = open_log(&options.path, options.format, None)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let path = options.path.clone();
        let (log, keeper) = Self::with_file(Box::new(file), len, options)
            .map_err(|source| OpenError::NotWritable { path, source })?;
        Ok((log, recovery, keeper))
    }

    /// A writer in front of any `LogFile` of length `len` (tests use a fake).
    fn with_file(
        file: Box<dyn LogFile>,
        len: u64,
        options: LogOptions,
    ) -> io::Result<(LogWriter, KeeperThread)> {
        let core = sync::Arc::new(Core {
            inner: Mutex::new(Inner {
                staged: Vec::new(),
                staged_count: 0,
                staged_gen: 1,
                done_gen: 0,
                writing: false,
                lead_claimed: false,
                group_size: 16,
                staged_waiters: Vec::new(),
                writing_waiters: Vec::new(),
                spare: Vec::new(),
                failures: Vec::new(),
                reopens: Vec::new(),
                keeper_idle: false,
                closed: false,
            }),
            keeper: Condvar::new(),
            file: Mutex::new(FileState {
                file,
                len,
                failing: false,
            }),
            handles: AtomicUsize::new(1),
            options,
            stats: Arc::default(),
        });
        let keeper = core.clone();
        let thread = thread::Builder::new()
            .name("msglog-log-keeper".into())
            .spawn(move || keep(keeper))?;
        Ok((LogWriter { core }, thread))
    }

    /// Stages encoded records (whole records only). When no write is in
    /// progress this call writes them itself before it returns; otherwise
    /// they go out with the next group. Pass the result to `outcome`.
    pub fn stage(&self, records: &[u8]) -> Staged {
        let mut inner = self.core.lock();
        inner.staged.extend_from_slice(records);
        inner.staged_count += 1;
        let gen = inner.staged_gen;
        if !self.core.options.fsync && !inner.writing && !inner.lead_claimed {
            if inner.group_size <= GATHER_ABOVE {
                // Alone lately: write at once, the fastest for one client.
                return Staged(StagedState::Written(self.core.lead(inner, gen)));
            }
            inner.lead_claimed = true;
            return Staged(StagedState::Lead(gen));
        }
        let wake_keeper = self.core.options.fsync && inner.keeper_idle;
        drop(inner);
        if wake_keeper {
            self.core.keeper.notify_one();
        }
        Staged(StagedState::Waiting(gen))
    }

    /// Waits until staged records are written: once this is `Ok` they are in
    /// the file; on failure nothing of them is.
    pub async fn outcome(&self, staged: Staged) -> Result<(), AppendError> {
        match staged.0 {
            StagedState::Written(result) => result,
            StagedState::Lead(gen) => {
                let claim = Claim(Some(&self.core));
                // Let every other connection that is ready on this thread run
                // and stage first, so that one write carries all their records.
                tokio::task::yield_now().await;
                claim.lead(gen).await
            }
            StagedState::Waiting(gen) => {
                std::future::poll_fn(|cx| self.core.poll_done(cx, gen)).await
            }
        }
    }

    /// Appends encoded records and waits until they are written.
    pub async fn append(&self, records: &[u8]) -> Result<(), AppendError> {
        let staged = self.stage(records);
        self.outcome(staged).await
    }

    /// The log's counters: whether appends fail, errors, reopens, write times.
    pub fn stats(&self) -> Arc<LogStats> {
        self.core.stats.clone()
    }

    /// A handle that can reopen the log but does not keep the writer alive.
    pub fn reopener(&self) -> LogReopener {
        LogReopener {
            core: self.core.clone(),
        }
    }
}

/// Records handed to the log, written already or waiting for their group.
#[must_use = "the records are acknowledged only once `outcome` is Ok"]
pub struct Staged(StagedState);

enum StagedState {
    Written(Result<(), AppendError>),
    /// This stage claimed the next write.
    Lead(u64),
    Waiting(u64),
}

/// A claim on the next write; given up on drop if not used, so that a
/// dropped future cannot leave the log waiting for it.
struct Claim<'a>(Option<&'a Core>);

impl Claim<'_> {
    async fn lead(mut self, gen: u64) -> Result<(), AppendError> {
        let core = self.0.take().expect("claim used once");
        {
            let mut inner = core.lock();
            inner.lead_claimed = false;
            // While a claim is out nobody else leads and the keeper waits for
            // it (no reopen, no fsync round): the claimed group is unwritten.
            debug_assert!(inner.done_gen < gen && !inner.writing);
            if inner.done_gen < gen && !inner.writing {
                return core.lead(inner, gen);
            }
        }
        // Not reached (see above). Should that change, waiting for the group
        // like any other stager is always correct.
        std::future::poll_fn(|cx| core.poll_done(cx, gen)).await
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(core) = self.0.take() {
            let mut inner = core.lock();
            inner.lead_claimed = false;
            core.release_if_idle(inner);
        }
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave `Inner` half-updated in a way that
        // matters more than stopping would: carry on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poll_done(&self, cx: &mut Context<'_>, gen: u64) -> Poll<Result<(), AppendError>> {
        let mut inner = self.lock();
        if inner.done_gen >= gen {
            return Poll::Ready(inner.outcome(gen));
        }
        if !self.options.fsync && !inner.writing && !inner.lead_claimed {
            // The last leader let go with this group still staged: lead it.
            debug_assert_eq!(gen, inner.staged_gen);
            return Poll::Ready(self.lead(inner, gen));
        }
        let waker = cx.waker();
        let list = if gen == inner.staged_gen {
            &mut inner.staged_waiters
        } else {
            &mut inner.writing_waiters
        };
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
        Poll::Pending
    }

    /// Writes group after group (at most MAX_ROUNDS) and returns the outcome
    /// of `gen`, the first of them.
    fn lead<'a>(&'a self, mut inner: MutexGuard<'a, Inner>, gen: u64) -> Result<(), AppendError> {
        inner.writing = true;
        for _ in 0..MAX_ROUNDS {
            inner = self.round(inner);
            if inner.staged.is_empty() {
                break;
            }
        }
        let result = inner.outcome(gen);
        self.release(inner);
        result
    }

    /// Writes the staged group with one write (and a sync with fsync), then
    /// wakes everyone waiting for it. Called by the leader, `writing` set.
    fn round<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let gen = inner.staged_gen;
        inner.staged_gen += 1;
        let count = mem::take(&mut inner.staged_count);
        let seen = u32::try_from(count.min(64)).unwrap_or(64);
        inner.group_size = inner.group_size - inner.group_size / 8 + seen * 2;
        let spare = mem::take(&mut inner.spare);
        let mut records = mem::replace(&mut inner.staged, spare);
        let waiters = mem::take(&mut inner.staged_waiters);
        let old = mem::replace(&mut inner.writing_waiters, waiters);
        inner.staged_waiters = old;
        drop(inner);

        let result = self.file.lock().unwrap_or_else(|p| p.into_inner()).commit(
            &records,
            &self.options,
            &self.stats,
        );

        records.clear();
        if records.capacity() > KEEP_BUFFER {
            records = Vec::new();
        }
        let mut inner = self.lock();
        inner.spare = records;
        inner.done_gen = gen;
        if let Err(error) = result {
            inner.failures.push(Failure {
                gen,
                error,
                unseen: count,
            });
        }
        let mut woken = mem::take(&mut inner.writing_waiters);
        drop(inner);
        for waker in woken.drain(..) {
            waker.wake();
        }
        let mut inner = self.lock();
        if inner.writing_waiters.capacity() == 0 {
            inner.writing_waiters = woken;
        }
        inner
    }

    /// Ends a leadership. If records were staged meanwhile, their waiters are
    /// woken so that one of them leads (the keeper does it itself with fsync).
    fn release(&self, mut inner: MutexGuard<'_, Inner>) {
        inner.writing = false;
        self.release_if_idle(inner);
    }

    fn release_if_idle(&self, mut inner: MutexGuard<'_, Inner>) {
        if inner.writing || inner.lead_claimed {
            return;
        }
        let handover = if !self.options.fsync && !inner.staged.is_empty() {
            mem::take(&mut inner.staged_waiters)
        } else {
            Vec::new()
        };
        let keeper_wanted = !inner.reopens.is_empty() || inner.closed;
        drop(inner);
        if keeper_wanted {
            self.keeper.notify_one();
        }
        for waker in handover {
            waker.wake();
        }
    }
}

impl Inner {
    /// The outcome of generation `gen`, which is done; each stager asks once.
    fn outcome(&mut self, gen: u64) -> Result<(), AppendError> {
        let Some(i) = self.failures.iter().position(|f| f.gen == gen) else {
            return Ok(());
        };
        let failure = &mut self.failures[i];
        let error = failure.error.clone();
        failure.unseen -= 1;
        if failure.unseen == 0 {
            self.failures.swap_remove(i);
        }
        Err(error)
    }
}

/// Reopens the log on request (SIGHUP); does not keep the writer running.
#[derive(Clone)]
pub struct LogReopener {
    core: sync::Arc<Core>,
}

impl LogReopener {
    /// Reopens the log path (after the file was moved away, logrotate style).
    /// Appends staged before this call go to the old file, later ones to the new.
    pub async fn reopen(&self) -> Result<(), Arc<io::Error>> {
        let stopped = || Arc::new(io::Error::other("the log writer has stopped"));
        let (done, result) = oneshot::channel();
        {
            let mut inner = self.core.lock();
            if inner.closed {
                return Err(stopped());
            }
            inner.reopens.push(done);
        }
        self.core.keeper.notify_one();
        result.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The keeper thread: writes with fsync, reopens, and syncs at the end.
fn keep(core: sync::Arc<Core>) {
    let mut inner = core.lock();
    loop {
        if inner.writing || inner.lead_claimed {
            // A connection is leading; it notifies when it lets go.
        } else if !inner.reopens.is_empty() {
            inner.writing = true;
            // Everything staged before the reopen belongs to the old file.
            while !inner.staged.is_empty() {
                inner = core.round(inner);
            }
            let reopens = mem::take(&mut inner.reopens);
            drop(inner);
            let result = core
                .file
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reopen(&core.options);
            core.stats.reopened(result.is_ok());
            for done in reopens {
                let _ = done.send(result.clone());
            }
            core.release(core.lock());
            inner = core.lock();
            continue;
        } else if core.options.fsync && !inner.staged.is_empty() {
            inner.writing = true;
            inner = core.round(inner);
            inner.writing = false;
            continue;
        } else if inner.closed && inner.staged.is_empty() {
            break;
        }
        inner.keeper_idle = true;
        inner = core.keeper.wait(inner).unwrap_or_else(|p| p.into_inner());
        inner.keeper_idle = false;
    }
    drop(inner);
    let mut file = core.file.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = file.file.sync_data() {
        tracing::error!(error = %e, "final sync of the log failed");
    }
}

/// What the writer needs of its file; a trait so tests can put a file in
/// front of it that fails or blocks on demand.
pub(crate) trait LogFile: Send + 'static {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn sync_data(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Which file this is, for a reopen to know its own lock.
    fn id(&self) -> Option<FileId> {
        None
    }
}

impl LogFile for File {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Write::write_vectored(self, bufs)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn id(&self) -> Option<FileId> {
        self.metadata().ok().map(|m| FileId::of(&m))
    }
}

impl FileState {
    /// Writes one group of whole records; with `fsync`, syncs before
    /// returning. On failure, cuts the file back to where the group began.
    fn commit(
        &mut self,
        records: &[u8],
        options: &LogOptions,
        stats: &LogStats,
    ) -> Result<(), AppendError> {
        let (fsync, path) = (options.fsync, &options.path);
        let started = Instant::now();
        let written = self.write_group(records);
        let written_at = Instant::now();
        stats.append_latency.observe(written_at - started);
        let result = written.and_then(|()| {
            if fsync {
                //= spec/protocol.md#durability
                //# With fsync enabled, the server MUST flush the record to stable
                //# storage before acknowledging it.
                let synced = self.file.sync_data();
                stats.sync_latency.observe(written_at.elapsed());
                synced
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.len += records.len() as u64;
                if self.failing {
                    self.failing = false;
                    stats.set_failing(false);
                    tracing::warn!(path = %path.display(), "appending to the log works again");
                }
                Ok(())
            }
            Err(e) => {
                stats.write_failed();
                if !self.failing {
                    self.failing = true;
                    stats.set_failing(true);
                    tracing::error!(path = %path.display(), error = %e,
                        "appending to the log failed; affected messages are rejected with 0xFF until it works again");
                }
                //= spec/protocol.md#durability
                //# When an append fails, the server MUST NOT leave any part of the
                //# affected records in the log.
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(error = %cut, "could not cut a failed write back off the log");
                }
                Err(AppendError::Io(Arc::new(e)))
            }
        }
    }

    //= spec/protocol.md#log-file
    //# The server MUST write each record whole, never interleaved with bytes of another record.
    // A group is whole records, each batch of them copied in under one lock;
    // only the one leader writes, so groups never interleave either.
    fn write_group(&mut self, mut records: &[u8]) -> io::Result<()> {
        while !records.is_empty() {
            match self.file.write_vectored(&[IoSlice::new(records)]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "log write wrote nothing",
                    ))
                }
                Ok(n) => records = &records[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn reopen(&mut self, options: &LogOptions) -> ReopenResult {
        if let Err(e) = self.file.sync_data() {
            tracing::warn!(error = %e, "sync before reopening the log failed");
        }
        //= spec/protocol.md#recovery
        //# A server that refuses a log when it reopens the log path MUST keep
        //# writing to the log it had open and report why.
        // On error `self.file` stays the old file; the error says why.
        // A SIGHUP without a rotation opens the file this one is: its lock
        // is ours already, held by the old open, which is kept.
        let ours = self.file.id();
        let (file, recovery) = open_log(&options.path, options.format, ours)
            .map_err(|e| Arc::new(io::Error::other(e)))?;
        if let Some(r) = recovery {
            tracing::warn!(
                offset = r.offset,
                removed = r.removed,
                sidecar = %r.sidecar.display(),
                "reopened log: {r}"
            );
        }
        let meta = file.metadata();
        self.len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
        if ours.is_none() || ours != meta.ok().map(|m| FileId::of(&m)) {
            self.file = Box::new(file);
        }
        Ok(())
    }
}

/// A fake log file for the tests, shared by the ordinary tests and the loom
/// model (where its lock is loom's, so that reading it is part of the model).
#[cfg(test)]
mod fake {
    use super::sync::{Arc, Mutex};
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Event {
        Write(Vec<u8>),
        Sync,
        Cut(u64),
    }

    /// A file that records what is done to it, can be told to fail writes
    /// after some bytes, and holds every sync until the test lets it go.
    pub(super) struct FakeFile {
        pub(super) events: Arc<Mutex<Vec<Event>>>,
        pub(super) fail_after: Option<usize>,
        pub(super) sync_gate: Option<std::sync::mpsc::Receiver<()>>,
    }

    impl LogFile for FakeFile {
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(room) = self.fail_after {
                if room == 0 {
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
                data.truncate(room);
                self.fail_after = Some(room - data.len());
            }
            let n = data.len();
            self.events.lock().unwrap().push(Event::Write(data));
            Ok(n)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            if let Some(gate) = &self.sync_gate {
                gate.recv().map_err(io::Error::other)?;
            }
            self.events.lock().unwrap().push(Event::Sync);
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.events.lock().unwrap().push(Event::Cut(len));
            Ok(())
        }
    }
}

#[cfg(all(test, not(msglog_loom)))]
mod tests {
    use super::fake::{Event, FakeFile};
    use super::*;
    use std::sync::Mutex;

    fn spawn_fake(file: FakeFile, start_len: u64, fsync: bool) -> LogWriter {
        let options = LogOptions {
            path: PathBuf::from("fake.log"),
            format: LogFormat::Text,
            fsync,
        };
        LogWriter::with_file(Box::new(file), start_len, options)
            .unwrap()
            .0
    }

    //= spec/protocol.md#durability
    //= type=test
    //# With fsync enabled, the server MUST flush the record to stable
    //# storage before acknowledging it.
    #[tokio::test]
    async fn with_fsync_the_ack_waits_for_the_sync() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (release, gate) = std::sync::mpsc::channel();
        let writer = spawn_fake(
            FakeFile {
                events: events.clone(),
                fail_after: None,
                sync_gate: Some(gate),
            },
            0,
            true,
        );
        let append = tokio::spawn({
            let writer = writer.clone();
            async move { writer.append(b"[a]: b\r\n".as_slice()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !append.is_finished(),
            "acknowledged before the sync finished"
        );
        assert_eq!(
            *events.lock().unwrap(),
            [Event::Write(b"[a]: b\r\n".to_vec())]
        );
        release.send(()).unwrap();
        assert!(append.await.unwrap().is_ok());
        assert_eq!(
            *events.lock().unwrap(),
            [Event::Write(b"[a]: b\r\n".to_vec()), Event::Sync]
        );
    }

    //= spec/protocol.md#durability
    //= type=test
    //# When an append fails, the server MUST NOT leave any part of the
    //# affected records in the log.
    #[tokio::test]
    async fn a_short_write_is_cut_back_and_reported() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let writer = spawn_fake(
            FakeFile {
                events: events.clone(),
                fail_after: Some(12),
                sync_gate: None,
            },
            100,
            false,
        );
        let ok = writer.append(b"[a]: one\r\n".as_slice()).await;
        assert!(ok.is_ok());
        let failed = writer.append(b"[a]: two\r\n".as_slice()).await;
        let Err(AppendError::Io(e)) = failed else {
            panic!("expected an I/O error, got {failed:?}")
        };
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(
            *events.lock().unwrap(),
            [
                Event::Write(b"[a]: one\r\n".to_vec()),
                Event::Write(b"[a".to_vec()),
                // Back to the length after the last whole write: 100 + 10.
                Event::Cut(110),
            ]
        );
    }

    fn open_in(dir: &tempfile::TempDir, fsync: bool) -> (LogWriter, KeeperThread) {
        let (log, _, keeper) = LogWriter::open(LogOptions {
            path: dir.path().join("m.log"),
            format: LogFormat::Text,
            fsync,
        })
        .unwrap();
        (log, keeper)
    }

    /// Many tasks on two threads append at once, each waiting for its own
    /// append before the next, like connections do.
    async fn concurrent_appends(fsync: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (log, keeper) = open_in(&dir, fsync);
        let mut tasks = Vec::new();
        for t in 0..16 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let mut records = Vec::new();
                    for j in 0..(i % 3 + 1) {
                        crate::proto::encode_record(
                            &mut records,
                            format!("t{t}").as_bytes(),
                            format!("{i}.{j}").as_bytes(),
                        );
                    }
                    log.append(&records).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        drop(log);
        keeper.join().unwrap();
        let text = std::fs::read(dir.path().join("m.log")).unwrap();
        let mut next = [(0, 0); 16];
        let mut count = 0;
        for r in crate::proto::records(&text) {
            let r = r.unwrap();
            let t: usize = std::str::from_utf8(&r.name[1..]).unwrap().parse().unwrap();
            let message = String::from_utf8(r.message).unwrap();
            let (i, j) = message.split_once('.').unwrap();
            // Each task's records appear whole and in the order it appended them.
            assert_eq!((i.parse().unwrap(), j.parse().unwrap()), next[t]);
            next[t] = if next[t].1 + 1 < next[t].0 % 3 + 1 {
                (next[t].0, next[t].1 + 1)
            } else {
                (next[t].0 + 1, 0)
            };
            count += 1;
        }
        assert_eq!(count, 16 * (34 + 33 * 2 + 33 * 3));
        assert!(next.iter().all(|&n| n == (100, 0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_whole_and_in_order() {
        concurrent_appends(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_with_fsync_are_whole_and_in_order() {
        concurrent_appends(true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_fails_every_append_of_its_group() {
        // Every write to /dev/full fails with ENOSPC.
        let (log, _, keeper) = LogWriter::open(LogOptions {
            path: PathBuf::from("/dev/full"),
            format: LogFormat::Text,
            fsync: false,
        })
        .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let err = log.append(b"[a]: b\r\n").await.unwrap_err();
                    assert!(matches!(err, AppendError::Io(ref e) if e.raw_os_error() == Some(28)));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // Every stager saw its failure, so none is kept.
        assert!(log.core.lock().failures.is_empty());
        drop(log);
        keeper.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_puts_earlier_appends_in_the_old_file() {
        for fsync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (log, keeper) = open_in(&dir, fsync);
            log.append(b"[a]: before\r\n").await.unwrap();
            std::fs::rename(dir.path().join("m.log"), dir.path().join("m.log.1")).unwrap();
            log.reopener().reopen().await.unwrap();
            log.append(b"[a]: after\r\n").await.unwrap();
            let reopener = log.reopener();
            drop(log);
            keeper.join().unwrap();
            assert_eq!(
                std::fs::read(dir.path().join("m.log.1")).unwrap(),
                b"[a]: before\r\n"
            );
            assert_eq!(
                std::fs::read(dir.path().join("m.log")).unwrap(),
                b"[a]: after\r\n"
            );
            // With every writer gone, a reopen says so instead of hanging.
            assert!(reopener.reopen().await.is_err());
        }
    }
}

/// The group commit under loom: every interleaving of two or three writers
/// and the keeper, up to each case's bound on preemptions (or
/// `LOOM_MAX_PREEMPTIONS`). Run with `MSGLOG_LOOM=1` (see the module doc).
/// A preemption is a switch away from a thread that could have gone on. Each
/// step up in a bound makes a case about ten times larger (two writers:
/// 1,573 executions at 2, 15,759 at 3); the bounds below keep the whole run
/// to about a minute and a half on two cores. Left out for that reason:
/// three writers with fsync (230,000 executions at 1) and two writers with
/// fsync and a reopen (170,000 at 1).
#[cfg(all(test, msglog_loom))]
mod loom_tests {
    use super::fake::{Event, FakeFile};
    use super::sync::{thread, Arc, Mutex};
    use super::*;
    use loom::future::block_on;

    #[derive(Debug, Clone, Copy, Default)]
    struct Case {
        writers: usize,
        preemptions: usize,
        fsync: bool,
        /// Start as if connections had been staging concurrently, so that a
        /// stage claims the write and yields before it leads (`Claim`).
        gather: bool,
        /// The file takes this many bytes, then every write fails (ENOSPC).
        fail_after: Option<usize>,
        /// One more thread reopens the log meanwhile; the keeper leads for
        /// it. The path is a directory, so the reopen fails and the old
        /// (fake) file stays.
        reopen: bool,
    }

    /// Writer `i`'s batch: two records, distinct from every other batch.
    fn batch(i: usize) -> Vec<u8> {
        format!("[w{i}]: one\r\n[w{i}]: two\r\n").into_bytes()
    }

    /// The file as its events left it.
    struct View {
        content: Vec<u8>,
        /// How much of `content` a sync has made durable.
        synced: usize,
        /// Bytes written in all, including any cut off again.
        written: usize,
    }

    fn view(events: &Mutex<Vec<Event>>) -> View {
        let mut v = View {
            content: Vec::new(),
            synced: 0,
            written: 0,
        };
        for event in events.lock().unwrap().iter() {
            match event {
                Event::Write(data) => {
                    v.content.extend_from_slice(data);
                    v.written += data.len();
                }
                Event::Sync => v.synced = v.content.len(),
                Event::Cut(len) => {
                    let len = usize::try_from(*len).unwrap();
                    assert!(len <= v.content.len(), "a cut that lengthens the file");
                    v.content.truncate(len);
                    v.synced = v.synced.min(len);
                }
            }
        }
        v
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// One execution: the writers append at once, then the last handle goes.
    fn run(case: Case) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let file = FakeFile {
            events: events.clone(),
            fail_after: case.fail_after,
            sync_gate: None,
        };
        let options = LogOptions {
            path: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            format: LogFormat::Text,
            fsync: case.fsync,
        };
        let (log, keeper) = LogWriter::with_file(Box::new(file), 0, options).unwrap();
        if case.gather {
            log.core.lock().group_size = 64;
        }
        let writers: Vec<_> = (0..case.writers)
            .map(|i| {
                let (log, events) = (log.clone(), events.clone());
                thread::spawn(move || {
                    let records = batch(i);
                    let result = block_on(log.append(&records));
                    if result.is_ok() {
                        // Acknowledged: the records are in the file already
                        // (with fsync, synced too).
                        let file = view(&events);
                        let durable = if case.fsync {
                            &file.content[..file.synced]
                        } else {
                            &file.content[..]
                        };
                        assert!(
                            contains(durable, &records),
                            "writer {i} acknowledged, but its records are not {} yet",
                            if case.fsync { "synced" } else { "written" }
                        );
                    }
                    result.is_ok()
                })
            })
            .collect();
        let reopener = case.reopen.then(|| {
            let reopener = log.reopener();
            thread::spawn(move || block_on(reopener.reopen()))
        });
        let acked: Vec<bool> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        if let Some(reopener) = reopener {
            let reopened = reopener.join().unwrap();
            assert!(reopened.is_err(), "a directory reopened as the log");
        }
        assert!(
            log.core.lock().failures.is_empty(),
            "a failed group kept for a stager that never looked"
        );
        drop(log);
        // The keeper ends with the last handle (else loom reports a deadlock).
        keeper.join().unwrap();

        // The file holds exactly the acknowledged batches, each once and whole.
        let file = view(&events);
        let mut rest = &file.content[..];
        let mut found = vec![false; case.writers];
        while !rest.is_empty() {
            let i = (0..case.writers)
                .find(|&i| rest.starts_with(&batch(i)))
                .unwrap_or_else(|| panic!("not a whole batch in the file: {rest:?}"));
            assert!(
                acked[i],
                "writer {i} failed, yet its records stay in the file"
            );
            assert!(!found[i], "writer {i}'s records are in the file twice");
            found[i] = true;
            rest = &rest[batch(i).len()..];
        }
        assert_eq!(found, acked, "acknowledged records missing from the file");
        if case.fail_after.is_none() {
            assert!(acked.iter().all(|&ok| ok), "an append failed");
            let total: usize = (0..case.writers).map(|i| batch(i).len()).sum();
            assert_eq!(file.written, total, "records written more than once");
        }
        // The final sync, after the last write.
        assert_eq!(events.lock().unwrap().last(), Some(&Event::Sync));
    }

    fn check(case: Case) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(case.preemptions);
        }
        let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = executions.clone();
        let started = Instant::now();
        builder.check(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            run(case);
        });
        eprintln!(
            "{case:?}: {} interleavings in {:.1?}",
            executions.load(std::sync::atomic::Ordering::Relaxed),
            started.elapsed()
        );
    }

    #[test]
    fn two_writers() {
        check(Case {
            writers: 2,
            preemptions: 3,
            ..Case::default()
        });
    }

    #[test]
    fn two_writers_gathering() {
        check(Case {
            writers: 2,
            preemptions: 2,
            gather: true,
            ..Case::default()
        });
    }

    #[test]
    fn three_writers() {
        check(Case {
            writers: 3,
            preemptions: 2,
            ..Case::default()
        });
    }

    #[test]
    fn three_writers_gathering() {
        check(Case {
            writers: 3,
            preemptions: 1,
            gather: true,
            ..Case::default()
        });
    }

    #[test]
    fn two_writers_with_fsync() {
        check(Case {
            writers: 2,
            preemptions: 2,
            fsync: true,
            ..Case::default()
        });
    }

    #[test]
    fn a_write_fails_half_way() {
        // Room for one batch and a few bytes: a group of one batch fits, the
        // next group is cut short, and every later write fails at once.
        check(Case {
            writers: 3,
            preemptions: 2,
            fail_after: Some(batch(0).len() + 3),
            ..Case::default()
        });
    }

    #[test]
    fn two_writers_gathering_and_a_reopen() {
        check(Case {
            writers: 2,
            preemptions: 1,
            gather: true,
            reopen: true,
            ..Case::default()
        });
    }

    #[test]
    fn a_writer_with_fsync_and_a_reopen() {
        check(Case {
            writers: 1,
            preemptions: 2,
            fsync: true,
            reopen: true,
            ..Case::default()
        });
    }
}
