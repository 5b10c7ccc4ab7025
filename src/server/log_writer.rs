//! The one owner of the log file. Connections hand it whole batches of
//! encoded records; a dedicated thread gathers every batch that is waiting
//! into one `write(2)` (group commit), optionally syncs, and then completes
//! each batch. A failed or short write is cut back off the file, so the log
//! never keeps a partial record.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::proto::LogFormat;

/// Most batches gathered into one write; also the kernel's iovec limit.
const MAX_BATCHES_PER_WRITE: usize = 1024;
/// A record is at most this long in either format: every byte of a
/// 65,535-byte name and message escaped to at most six bytes (`\u0000` in
/// JSON; five in text), plus the fixed parts.
pub const MAX_RECORD_LEN: u64 = 2 * 6 * 65_535 + 256;

/// Why an append was not done. Nothing of the batch is in the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("writing to the log failed: {0}")]
    Io(Arc<io::Error>),
    #[error("the log writer has stopped")]
    WriterStopped,
}

/// Options of the log file.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub path: PathBuf,
    pub format: LogFormat,
    /// `fdatasync` after each group write, before any of its acks.
    pub fsync: bool,
}

/// A torn final record cut off when the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Length of the log after the cut: where the torn record began.
    pub offset: u64,
    /// Bytes removed.
    pub removed: u64,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open log file {path} for appending: {source}; check that its directory exists and is writable")]
    NotWritable { path: PathBuf, source: io::Error },
    #[error("log file {path} ends with {tail} bytes that are not a complete record and too long to be a torn one; it does not look like a msglog log, so it is left untouched: move it away or pass another --log")]
    NotALog { path: PathBuf, tail: u64 },
}

/// The outcome of one append: the emptied buffer back for reuse, or the
/// buffer with the reason nothing of it was written.
pub type AppendResult = Result<Vec<u8>, (Vec<u8>, AppendError)>;
type Pending = (Vec<u8>, oneshot::Sender<AppendResult>);

enum Request {
    Append {
        records: Vec<u8>,
        done: oneshot::Sender<AppendResult>,
    },
    Reopen {
        done: oneshot::Sender<Result<(), Arc<io::Error>>>,
    },
}

/// A handle to the writer thread; cheap to clone. The thread ends (after a
/// final sync) when every handle is dropped.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::UnboundedSender<Request>,
}

impl LogWriter {
    /// Opens the log (recovering a torn tail) and starts the writer thread.
    pub fn open(
        options: LogOptions,
    ) -> Result<(LogWriter, Option<Recovery>, std::thread::JoinHandle<()>), OpenError> {
        let (file, recovery) = open_log(&options.path, options.format)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("msglog-log-writer".into())
            .spawn(move || run(file, options, rx))
            .map_err(|source| OpenError::NotWritable {
                path: PathBuf::new(),
                source,
            })?;
        Ok((LogWriter { tx }, recovery, thread))
    }

    /// Appends encoded records (whole records only) and returns the emptied
    /// buffer for reuse once they are written; on failure nothing of them is
    /// in the file.
    pub async fn append(&self, records: Vec<u8>) -> AppendResult {
        let (done, result) = oneshot::channel();
        if let Err(mpsc::error::SendError(Request::Append { records, .. })) =
            self.tx.send(Request::Append { records, done })
        {
            return Err((records, AppendError::WriterStopped));
        }
        result
            .await
            .unwrap_or_else(|_| Err((Vec::new(), AppendError::WriterStopped)))
    }

    /// A handle that can reopen the log but does not keep the writer alive.
    pub fn reopener(&self) -> LogReopener {
        LogReopener {
            tx: self.tx.downgrade(),
        }
    }
}

/// Reopens the log on request (SIGHUP); does not keep the writer running.
#[derive(Clone)]
pub struct LogReopener {
    tx: mpsc::WeakUnboundedSender<Request>,
}

impl LogReopener {
    /// Reopens the log path (after the file was moved away, logrotate style).
    /// Appends queued before this call go to the old file, later ones to the new.
    pub async fn reopen(&self) -> Result<(), Arc<io::Error>> {
        let stopped = || Arc::new(io::Error::other("the log writer has stopped"));
        let tx = self.tx.upgrade().ok_or_else(stopped)?;
        let (done, result) = oneshot::channel();
        tx.send(Request::Reopen { done }).map_err(|_| stopped())?;
        drop(tx);
        result.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Opens for appending, creating the file if missing, and cuts off a final
/// record that lacks its CR LF: it was being written when a previous server
/// died, so it was never acknowledged.
pub fn open_log(path: &Path, format: LogFormat) -> Result<(File, Option<Recovery>), OpenError> {
    let terminator = format.terminator();
    let not_writable = |source| OpenError::NotWritable {
        path: path.to_owned(),
        source,
    };
    //= spec/protocol.md#log-file
    //# The server MUST open the log file for appending, creating it if it does not exist.
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(not_writable)?;
    let len = file.metadata().map_err(not_writable)?.len();
    if len == 0 {
        return Ok((file, None));
    }
    //= spec/protocol.md#recovery
    //# On start, a server MUST remove a final record that lacks its CR LF.
    let window = len.min(MAX_RECORD_LEN + 2);
    let mut tail = vec![0; window as usize];
    file.seek(SeekFrom::Start(len - window))
        .map_err(not_writable)?;
    file.read_exact(&mut tail).map_err(not_writable)?;
    if tail.ends_with(terminator) {
        return Ok((file, None));
    }
    let keep_in_window = tail
        .windows(terminator.len())
        .rposition(|w| w == terminator)
        .map(|i| (i + terminator.len()) as u64);
    let offset = match keep_in_window {
        Some(k) => len - window + k,
        None if len <= MAX_RECORD_LEN => 0,
        //= spec/protocol.md#recovery
        //# If the bytes after the last CR LF are longer than any record can be,
        //# the server MUST refuse to start and leave the file unchanged.
        None => {
            return Err(OpenError::NotALog {
                path: path.to_owned(),
                tail: window,
            })
        }
    };
    file.set_len(offset).map_err(not_writable)?;
    file.sync_all().map_err(not_writable)?;
    Ok((
        file,
        Some(Recovery {
            offset,
            removed: len - offset,
        }),
    ))
}

/// What the writer needs of its file; a trait so tests can put a file in
/// front of it that fails or blocks on demand.
pub(crate) trait LogFile: Send + 'static {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn sync_data(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
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
}

struct Writer {
    file: Box<dyn LogFile>,
    /// File length after the last successful write: where to cut back to.
    len: u64,
    options: LogOptions,
    /// True while appends fail, so an episode is reported once.
    failing: bool,
}

fn run(file: File, options: LogOptions, rx: mpsc::UnboundedReceiver<Request>) {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    run_with(Box::new(file), len, options, rx);
}

fn run_with(
    file: Box<dyn LogFile>,
    len: u64,
    options: LogOptions,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut writer = Writer {
        file,
        len,
        options,
        failing: false,
    };
    let mut batch: Vec<Pending> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Append { records, done } => batch.push((records, done)),
                Request::Reopen { done } => {
                    // Everything queued before the reopen belongs to the old file.
                    writer.commit(&mut batch);
                    let _ = done.send(writer.reopen());
                }
            }
            if batch.len() < MAX_BATCHES_PER_WRITE {
                next = rx.try_recv().ok();
            }
        }
        writer.commit(&mut batch);
    }
    if let Err(e) = writer.file.sync_data() {
        tracing::error!(error = %e, "final sync of the log failed");
    }
}

impl Writer {
    fn commit(&mut self, batch: &mut Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        let result = self.write_batch(batch).and_then(|()| {
            if self.options.fsync {
                //= spec/protocol.md#durability
                //# With fsync enabled, the server MUST flush the record to stable
                //# storage before acknowledging it.
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    tracing::warn!(path = %self.options.path.display(), "appending to the log works again");
                }
                for (mut records, done) in batch.drain(..) {
                    records.clear();
                    let _ = done.send(Ok(records));
                }
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::error!(path = %self.options.path.display(), error = %e,
                        "appending to the log failed; affected messages are rejected with 0xFF until it works again");
                }
                //= spec/protocol.md#durability
                //# When an append fails, the server MUST NOT leave any part of the
                //# affected records in the log.
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(error = %cut, "could not cut a failed write back off the log");
                }
                let error = AppendError::Io(Arc::new(e));
                for (mut records, done) in batch.drain(..) {
                    records.clear();
                    let _ = done.send(Err((records, error.clone())));
                }
            }
        }
    }

    //= spec/protocol.md#log-file
    //# The server MUST write each record whole, never interleaved with bytes of another record.
    // Each batch holds whole records of one connection; batches are written
    // one after another by this one thread.
    fn write_batch(&mut self, batch: &[Pending]) -> io::Result<()> {
        let total: usize = batch.iter().map(|(r, _)| r.len()).sum();
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|(r, _)| IoSlice::new(r)).collect();
        let mut remaining = &mut slices[..];
        let mut written = 0;
        while written < total {
            match self.file.write_vectored(remaining) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "log write wrote nothing",
                    ))
                }
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut remaining, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.len += total as u64;
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), Arc<io::Error>> {
        if let Err(e) = self.file.sync_data() {
            tracing::warn!(error = %e, "sync before reopening the log failed");
        }
        match open_log(&self.options.path, self.options.format) {
            Ok((file, recovery)) => {
                if let Some(r) = recovery {
                    tracing::warn!(
                        offset = r.offset,
                        removed = r.removed,
                        "cut a torn final record off the reopened log"
                    );
                }
                self.len = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Box::new(file);
                Ok(())
            }
            Err(OpenError::NotWritable { source, .. }) => Err(Arc::new(source)),
            Err(e) => Err(Arc::new(io::Error::other(e.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Write(Vec<u8>),
        Sync,
        Cut(u64),
    }

    /// A file that records what is done to it, can be told to fail writes
    /// after some bytes, and holds every sync until the test lets it go.
    struct FakeFile {
        events: Arc<Mutex<Vec<Event>>>,
        fail_after: Option<usize>,
        sync_gate: Option<std::sync::mpsc::Receiver<()>>,
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

    fn spawn_fake(file: FakeFile, start_len: u64, fsync: bool) -> LogWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        let options = LogOptions {
            path: PathBuf::from("fake.log"),
            format: LogFormat::Text,
            fsync,
        };
        std::thread::spawn(move || run_with(Box::new(file), start_len, options, rx));
        LogWriter { tx }
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
            async move { writer.append(b"[a]: b\r\n".to_vec()).await }
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
        let ok = writer.append(b"[a]: one\r\n".to_vec()).await;
        assert!(ok.is_ok());
        let failed = writer.append(b"[a]: two\r\n".to_vec()).await;
        let Err((_, AppendError::Io(e))) = failed else {
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

    #[test]
    fn torn_tail_is_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        std::fs::write(&path, b"[a]: one\r\n[a]: tw").unwrap();
        let (_, recovery) = open_log(&path, LogFormat::Text).unwrap();
        assert_eq!(
            recovery,
            Some(Recovery {
                offset: 10,
                removed: 7
            })
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"[a]: one\r\n");
        let (_, again) = open_log(&path, LogFormat::Text).unwrap();
        assert_eq!(again, None);
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# If the bytes after the last CR LF are longer than any record can be,
    //# the server MUST refuse to start and leave the file unchanged.
    #[test]
    fn foreign_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let junk = vec![b'x'; MAX_RECORD_LEN as usize + 10];
        std::fs::write(&path, &junk).unwrap();
        assert!(matches!(
            open_log(&path, LogFormat::Text),
            Err(OpenError::NotALog { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }

    //= spec/protocol.md#log-file
    //= type=test
    //# The server MUST open the log file for appending, creating it if it does not exist.
    #[test]
    fn log_is_created_or_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let (mut file, _) = open_log(&path, LogFormat::Text).unwrap();
        Write::write_all(&mut file, b"[a]: one\r\n").unwrap();
        drop(file);
        let (mut file, _) = open_log(&path, LogFormat::Text).unwrap();
        Write::write_all(&mut file, b"[a]: two\r\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[a]: one\r\n[a]: two\r\n");
    }

    #[test]
    fn missing_directory_is_not_writable() {
        let err = open_log(Path::new("/nonexistent-dir/m.log"), LogFormat::Text).unwrap_err();
        assert!(matches!(err, OpenError::NotWritable { .. }));
    }
}
