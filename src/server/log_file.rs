//! Opening the log: the IO half of recovery (spec: #recovery). The policy is
//! `proto::recovery`'s; this reads what it needs, and carries out its one
//! destructive decision carefully: the torn record is copied to a new file
//! and synced before it is cut off, and anything that goes wrong before the
//! cut leaves the log as it was.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::proto::recovery::{self, LogEnds, Refusal, TornTail, END_WINDOW, HEAD_WINDOW};
use crate::proto::LogFormat;

/// A torn final record cut off when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Length of the log after the cut: where the torn record began.
    pub offset: u64,
    /// Bytes removed.
    pub removed: u64,
    /// The new file that holds the removed bytes.
    pub sidecar: PathBuf,
}

//= spec/protocol.md#recovery
//# When the server removes a torn record, it MUST report the offset, the
//# number of bytes removed and the file that holds the copy.
impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cut a torn final record (never acknowledged) of {} bytes at offset {} off the log; the bytes are kept in {}",
            self.removed,
            self.offset,
            self.sidecar.display()
        )
    }
}

/// Why the log could not be opened. Whatever the reason, the file is as it
/// was (a copy of a torn record may have been made).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open log file {path} for appending: {source}; check that its directory exists and is writable")]
    NotWritable { path: PathBuf, source: io::Error },
    #[error("cannot read log file {path} to check its end: {source}; nothing was changed")]
    Unreadable { path: PathBuf, source: io::Error },
    //= spec/protocol.md#log-file
    //# The server MUST refuse to open a log file whose lock another process
    //# holds, and leave the file unchanged.
    #[error("log file {path} is locked by another process, most likely another msglog serve writing to it; nothing was changed: stop that server, or pass --log another path")]
    Locked { path: PathBuf },
    #[error("log file {path} is {kind}, not a regular file; nothing was changed: pass --log the path of a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },
    //= spec/protocol.md#recovery
    //# When the server refuses to open a log, it MUST leave the file unchanged
    //# and report the file, the offset and what it found there.
    #[error(
        "not using log file {path}: {reason}. Nothing was changed. {}",
        advice(reason)
    )]
    Refused { path: PathBuf, reason: Refusal },
    #[error("log file {path} ends with a torn record ({len} bytes at offset {offset}), but no copy of it could be kept in {sidecar}: {source}; nothing was changed: make the log's directory writable, or move the log away")]
    SidecarFailed {
        path: PathBuf,
        sidecar: PathBuf,
        offset: u64,
        len: u64,
        source: io::Error,
    },
    #[error("the torn record at offset {offset} of log file {path} was copied to {sidecar}, but cutting it off failed: {source}; the log is unchanged")]
    CutFailed {
        path: PathBuf,
        sidecar: PathBuf,
        offset: u64,
        source: io::Error,
    },
}

/// What to do about a refused log.
fn advice(reason: &Refusal) -> String {
    match reason {
        Refusal::FormatMismatch { found, configured } => format!(
            "To append to it, start with --log-format {found}; to write {configured} records, pass --log a new file."
        ),
        _ => "If it is not a msglog log, pass --log another path; if it is, move it away, or repair it (`msglog read --check` names damaged records), and start again.".into(),
    }
}

/// Which file an open file is, whatever path it was opened by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Opens the log for appending, creating it if missing, locks it and checks
/// it. A torn final record (the server died while writing it, so it was
/// never acknowledged) is copied to a new file next to the log and cut off.
/// Anything else that is not a clean end of a log of `format` refuses the
/// file and leaves it untouched. `ours` is the file this process holds open
/// and locked already, if any (a reopen of a path that was not moved).
pub fn open_log(
    path: &Path,
    format: LogFormat,
    ours: Option<FileId>,
) -> Result<(File, Option<Recovery>), OpenError> {
    //= spec/protocol.md#log-file
    //# The server MUST open the log file for appending, creating it if it does not exist.
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| OpenError::NotWritable {
            path: path.to_owned(),
            source,
        })?;
    let unreadable = |source| OpenError::Unreadable {
        path: path.to_owned(),
        source,
    };
    // The file itself (a symlink is followed), so nothing can swap it
    // between this check and the cut.
    let meta = file.metadata().map_err(unreadable)?;
    let kind = meta.file_type();
    //= spec/protocol.md#recovery
    //# The server MUST NOT read back or cut a log that is not a regular file,
    //# and MUST refuse one that is neither a regular file, a FIFO nor a
    //# character device.
    if kind.is_fifo() || kind.is_char_device() {
        // A stream (a pipe, /dev/null): nothing to read back, nothing to cut.
        return Ok((file, None));
    }
    if !kind.is_file() {
        let kind = if kind.is_block_device() {
            "a block device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(OpenError::NotAFile {
            path: path.to_owned(),
            kind,
        });
    }
    //= spec/protocol.md#log-file
    //# While it writes to a regular file, the server MUST hold an exclusive
    //# lock on it, taken before it reads the file back.
    // A second server on the same log would interleave its records with
    // ours, and its recovery could cut a record we are still writing. The
    // lock (flock) goes with this open file and ends with it, or with the
    // process however it dies.
    if ours != Some(FileId::of(&meta)) {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(OpenError::Locked {
                    path: path.to_owned(),
                })
            }
            // A filesystem without locks (some network filesystems): the
            // lock is a guard, not a condition of writing.
            Err(_) => {}
        }
    }
    let len = meta.len();
    let (head, end) = read_ends(&file, len).map_err(unreadable)?;
    let torn = match recovery::plan(
        format,
        LogEnds {
            len,
            head: head.as_deref().unwrap_or(&end),
            end: &end,
        },
    ) {
        Ok(None) => return Ok((file, None)),
        Ok(Some(torn)) => torn,
        Err(reason) => {
            return Err(OpenError::Refused {
                path: path.to_owned(),
                reason,
            })
        }
    };
    let tail = &end[end.len() - torn.len as usize..];
    let mode = meta.permissions().mode() & 0o777;
    let sidecar = keep_copy(path, torn, tail, mode)?;
    //= spec/protocol.md#recovery
    //# A server MUST NOT remove any bytes from a log it opens other than a torn
    //# record.
    file.set_len(torn.offset)
        .and_then(|()| file.sync_all())
        .map_err(|source| OpenError::CutFailed {
            path: path.to_owned(),
            sidecar: sidecar.clone(),
            offset: torn.offset,
            source,
        })?;
    Ok((
        file,
        Some(Recovery {
            offset: torn.offset,
            removed: torn.len,
            sidecar,
        }),
    ))
}

/// The first `HEAD_WINDOW` and the last `END_WINDOW` bytes of the file; a
/// short file is read once, as `end` (then `head` is `None`: the same bytes).
fn read_ends(file: &File, len: u64) -> io::Result<(Option<Vec<u8>>, Vec<u8>)> {
    let read_at = |offset: u64, size: usize| -> io::Result<Vec<u8>> {
        let mut buf = vec![0; size];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    };
    if len <= END_WINDOW as u64 {
        return Ok((None, read_at(0, len as usize)?));
    }
    let head = read_at(0, HEAD_WINDOW)?;
    let end = read_at(len - END_WINDOW as u64, END_WINDOW)?;
    Ok((Some(head), end))
}

//= spec/protocol.md#recovery
//# Before it removes a torn record, the server MUST write a copy of it to a
//# new file next to the log, without overwriting any existing file, and flush
//# the copy and its directory to stable storage.
/// Writes the torn record to `<log>.torn-<offset>` (or `.1`, `.2`, ... after
/// it, if taken), readable by no more than the log, and syncs it and its
/// directory. On failure, removes the copy it created.
fn keep_copy(log: &Path, torn: TornTail, bytes: &[u8], mode: u32) -> Result<PathBuf, OpenError> {
    const MAX_TRIES: u32 = 1000;
    let mut base = OsString::from(log.as_os_str());
    base.push(format!(".torn-{}", torn.offset));
    let failed = |sidecar: &Path, source| OpenError::SidecarFailed {
        path: log.to_owned(),
        sidecar: sidecar.to_owned(),
        offset: torn.offset,
        len: torn.len,
        source,
    };
    for n in 0..MAX_TRIES {
        let mut name = base.clone();
        if n > 0 {
            name.push(format!(".{n}"));
        }
        let sidecar = PathBuf::from(name);
        let mut copy = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&sidecar)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            //= spec/protocol.md#recovery
            //# If the copy cannot be written, the server MUST refuse to open the
            //# log.
            Err(e) => return Err(failed(&sidecar, e)),
        };
        let directory = match sidecar.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let written = copy
            .write_all(bytes)
            .and_then(|()| copy.sync_all())
            .and_then(|()| File::open(directory)?.sync_all());
        return match written {
            Ok(()) => Ok(sidecar),
            Err(e) => {
                drop(copy);
                // Ours, just created, and incomplete: do not leave it behind.
                let _ = std::fs::remove_file(&sidecar);
                Err(failed(&sidecar, e))
            }
        };
    }
    Err(failed(
        Path::new(&base),
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{MAX_TRIES} files with that name and a number after it exist already"),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join("m.log");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# Before it removes a torn record, the server MUST write a copy of it to a
    //# new file next to the log, without overwriting any existing file, and flush
    //# the copy and its directory to stable storage.
    #[test]
    fn torn_tail_is_copied_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"[a]: one\r\n[a]: tw");
        // A file of the first name exists: it is kept, the next name is used.
        let taken = dir.path().join("m.log.torn-10");
        std::fs::write(&taken, b"someone else's").unwrap();
        let (_, recovery) = open_log(&path, LogFormat::Text, None).unwrap();
        let sidecar = dir.path().join("m.log.torn-10.1");
        assert_eq!(
            recovery,
            Some(Recovery {
                offset: 10,
                removed: 7,
                sidecar: sidecar.clone(),
            })
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"[a]: one\r\n");
        assert_eq!(std::fs::read(&sidecar).unwrap(), b"[a]: tw");
        assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's");
        let (_, again) = open_log(&path, LogFormat::Text, None).unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn the_copy_is_no_more_readable_than_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"[a]: one\r\n[a]: tw");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (_, recovery) = open_log(&path, LogFormat::Text, None).unwrap();
        let sidecar = recovery.unwrap().sidecar;
        let mode = std::fs::metadata(sidecar).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    //= spec/protocol.md#recovery
    //= type=test
    //# The server MUST NOT read back or cut a log that is not a regular file,
    //# and MUST refuse one that is neither a regular file, a FIFO nor a
    //# character device.
    #[test]
    fn only_regular_files_are_read_back() {
        // A character device is appended to as it is.
        let (_, recovery) = open_log(Path::new("/dev/null"), LogFormat::Text, None).unwrap();
        assert_eq!(recovery, None);
        let dir = tempfile::tempdir().unwrap();
        let err = open_log(dir.path(), LogFormat::Text, None).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::NotWritable { .. } | OpenError::NotAFile { .. }
            ),
            "{err}"
        );
    }

    //= spec/protocol.md#log-file
    //= type=test
    //# The server MUST open the log file for appending, creating it if it does not exist.
    #[test]
    fn log_is_created_or_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let (mut file, _) = open_log(&path, LogFormat::Text, None).unwrap();
        Write::write_all(&mut file, b"[a]: one\r\n").unwrap();
        drop(file);
        let (mut file, _) = open_log(&path, LogFormat::Text, None).unwrap();
        Write::write_all(&mut file, b"[a]: two\r\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[a]: one\r\n[a]: two\r\n");
    }

    //= spec/protocol.md#log-file
    //= type=test
    //# The server MUST refuse to open a log file whose lock another process
    //# holds, and leave the file unchanged.
    #[test]
    fn a_log_held_by_another_open_is_refused_untouched_until_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let (holder, _) = open_log(&path, LogFormat::Text, None).unwrap();
        // What the holder's next record looks like half-written: a recovery
        // would cut it.
        std::fs::write(&path, b"[a]: one\r\n[a]: tw").unwrap();
        let err = open_log(&path, LogFormat::Text, None).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another msglog serve"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"[a]: one\r\n[a]: tw");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(holder);
        let (_, recovery) = open_log(&path, LogFormat::Text, None).unwrap();
        assert_eq!(recovery.unwrap().offset, 10);
    }

    //= spec/protocol.md#log-file
    //= type=test
    //# While it writes to a regular file, the server MUST hold an exclusive
    //# lock on it, taken before it reads the file back.
    #[test]
    fn the_holder_reopens_its_own_log_but_not_a_rotated_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let (held, _) = open_log(&path, LogFormat::Text, None).unwrap();
        let ours = FileId::of(&held.metadata().unwrap());
        // The path was not moved: the file is the one held, whose lock is
        // ours (the caller keeps `held`, and with it the lock).
        let (again, _) = open_log(&path, LogFormat::Text, Some(ours)).unwrap();
        assert_eq!(FileId::of(&again.metadata().unwrap()), ours);
        drop(again);
        let err = open_log(&path, LogFormat::Text, None).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        // Rotated: the path is a new file, locked for the new open.
        std::fs::rename(&path, dir.path().join("m.log.1")).unwrap();
        let (new, _) = open_log(&path, LogFormat::Text, Some(ours)).unwrap();
        assert_ne!(FileId::of(&new.metadata().unwrap()), ours);
        let err = open_log(&path, LogFormat::Text, None).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    }

    #[test]
    fn missing_directory_is_not_writable() {
        let err = open_log(Path::new("/nonexistent-dir/m.log"), LogFormat::Text, None).unwrap_err();
        assert!(matches!(err, OpenError::NotWritable { .. }));
    }

    #[test]
    fn refusal_names_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"{\"a\":1}\n");
        let err = open_log(&path, LogFormat::Jsonl, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.log") && err.contains("offset 2"), "{err}");
        assert!(err.contains("pass --log another path"), "{err}");
    }
}
