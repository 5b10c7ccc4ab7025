//! `msglog passwd FILE NAME [--delete]`: sets (adds or replaces) or removes
//! one user of a users file. The password comes from the terminal without
//! echo (twice, must match), or from the first line of standard input when
//! that is not a terminal; never from the command line. The file is
//! rewritten atomically (a temporary file in the same directory, synced,
//! renamed over it, the directory synced), with its mode and owner, and
//! every other line kept byte for byte. A file that does not parse is left
//! alone.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use msglog::proto::frame::MAX_PAYLOAD_LEN;
use msglog::server::users::{
    check_name, default_params, hash_password, Change, EncodedName, HashError, LineError,
    ParseError, UsersFile,
};

const PASSWD_HELP: &str = "\
The password is read from the terminal without echo (twice; they must
match), or, when standard input is not a terminal, from its first line
(without the line break):

    printf '%s\\n' \"$PASSWORD\" | msglog passwd users.txt alice

The hash is argon2id (m=19456 KiB, t=2, p=1, a random salt), written as a
PHC string on the line `NAME:PHC`. The file is replaced atomically, keeping
its mode, owner, comments and other users; a new file gets mode 0600. A
running `msglog serve --users FILE` reads it again on SIGHUP.

Exit status:
  0  done
  1  the file cannot be read, parsed or written, the user to delete is not
     in it, or the password is empty, too long or was not confirmed
  2  usage error";

#[derive(Debug, clap::Args)]
#[command(after_help = PASSWD_HELP)]
pub struct PasswdArgs {
    /// The users file; created with mode 0600 if missing.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The name, byte for byte as clients send it in their NAME frame (the
    /// file writes `:`, `%`, control characters and bytes that are not UTF-8
    /// as %HH).
    #[arg(value_name = "NAME")]
    name: OsString,
    /// Remove NAME from the file instead of setting its password.
    #[arg(long)]
    delete: bool,
}

/// Why `msglog passwd` changed nothing.
#[derive(Debug, thiserror::Error)]
enum PasswdError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}, {error}; fix that line first: nothing was changed", path.display())]
    Parse { path: PathBuf, error: ParseError },
    #[error("{}: no user {name:?}; nothing was changed", path.display())]
    NoSuchUser { path: PathBuf, name: EncodedName },
    #[error("{}: {error}; nothing was changed", path.display())]
    BadName { path: PathBuf, error: LineError },
    #[error("no password on standard input; give it as the first line")]
    NoPassword,
    #[error("the password is empty; the protocol refuses an empty PASS")]
    EmptyPassword,
    #[error("the password is {len} bytes long; a PASS frame holds at most {MAX_PAYLOAD_LEN}")]
    PasswordTooLong { len: usize },
    #[error("the passwords do not match; nothing was changed")]
    Mismatch,
    #[error("cannot read the password: {0}")]
    ReadPassword(io::Error),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("cannot write {}: {source}; the file was not changed", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} changed while msglog passwd ran; nothing was written: run it again", path.display())]
    ChangedMeanwhile { path: PathBuf },
}

pub fn run(args: PasswdArgs) -> ExitCode {
    match passwd(&args) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("msglog passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(args: &PasswdArgs) -> Result<String, PasswdError> {
    // Messages name the file as it was given; the IO goes to its target.
    let path = args.file.clone();
    let target = target_of(&path);
    let read_error = |source| PasswdError::Read {
        path: path.clone(),
        source,
    };
    let (before, metadata) = match fs::read(&target) {
        Ok(bytes) => (bytes, Some(fs::metadata(&target).map_err(read_error)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !args.delete => (Vec::new(), None),
        Err(e) => return Err(read_error(e)),
    };
    let mut file = UsersFile::parse(&before).map_err(|error| PasswdError::Parse {
        path: path.clone(),
        error,
    })?;
    let name = args.name.as_bytes();
    let shown = EncodedName::of(name);
    let message = if args.delete {
        if !file.remove(name) {
            return Err(PasswdError::NoSuchUser { path, name: shown });
        }
        format!("{}: removed user {shown:?}", path.display())
    } else {
        // Before the password is typed: a name nobody can log in with.
        check_name(name).map_err(|error| PasswdError::BadName {
            path: path.clone(),
            error,
        })?;
        let password = read_password(&shown)?;
        let phc = hash_password(&password, &default_params())?;
        let change = file.set(name, &phc).map_err(|e| PasswdError::BadName {
            path: path.clone(),
            error: e.error,
        })?;
        let done = match change {
            Change::Added => "added user",
            Change::Replaced => "set a new password for",
        };
        format!("{}: {done} {shown:?}", path.display())
    };
    replace_file(&target, &before, metadata.as_ref(), &file.to_bytes()).map_err(|e| match e {
        PasswdError::Write { source, .. } => PasswdError::Write { path, source },
        PasswdError::ChangedMeanwhile { .. } => PasswdError::ChangedMeanwhile { path },
        other => other,
    })?;
    Ok(format!(
        "{message}; a running `msglog serve --users` reads it again on SIGHUP"
    ))
}

/// The file a path names: a symbolic link is followed, so that the link
/// stays and its target is what gets replaced.
fn target_of(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

fn read_password(name: &EncodedName) -> Result<Vec<u8>, PasswdError> {
    let password = if io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name:?}: "))
            .map_err(PasswdError::ReadPassword)?;
        let again = rpassword::prompt_password("The same password again: ")
            .map_err(PasswdError::ReadPassword)?;
        if first != again {
            return Err(PasswdError::Mismatch);
        }
        first.into_bytes()
    } else {
        first_line(&mut io::stdin().lock())?
    };
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    if password.len() > MAX_PAYLOAD_LEN {
        return Err(PasswdError::PasswordTooLong {
            len: password.len(),
        });
    }
    Ok(password)
}

/// The first line of `input`, without its LF or CR LF.
fn first_line(input: &mut impl BufRead) -> Result<Vec<u8>, PasswdError> {
    let mut line = Vec::new();
    let read = input
        .read_until(b'\n', &mut line)
        .map_err(PasswdError::ReadPassword)?;
    if read == 0 {
        return Err(PasswdError::NoPassword);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same
/// directory with the old file's mode and owner (a new file: 0600), synced,
/// then renamed over `path` unless the file changed since it was read as
/// `before`, then the directory synced.
fn replace_file(
    path: &Path,
    before: &[u8],
    metadata: Option<&fs::Metadata>,
    bytes: &[u8],
) -> Result<(), PasswdError> {
    let write_error = |source| PasswdError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name()
            .map_or("users".into(), |n| n.to_string_lossy())
    );
    // Created with mode 0600; removed again if anything below fails.
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes).map_err(write_error)?;
    if let Some(old) = metadata {
        fs::set_permissions(temp.path(), old.permissions()).map_err(write_error)?;
        let mine = temp.as_file().metadata().map_err(write_error)?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(temp.as_file(), Some(old.uid()), Some(old.gid()))
                .map_err(write_error)?;
        }
    }
    temp.as_file().sync_all().map_err(write_error)?;
    let now = match fs::read(path) {
        Ok(now) => now,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(write_error(e)),
    };
    if now != before {
        return Err(PasswdError::ChangedMeanwhile {
            path: path.to_owned(),
        });
    }
    temp.persist(path).map_err(|e| write_error(e.error))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_without_its_line_break() {
        let line = |input: &[u8]| first_line(&mut &input[..]);
        assert_eq!(line(b"secret\nmore\n").unwrap(), b"secret");
        assert_eq!(line(b"secret\r\n").unwrap(), b"secret");
        assert_eq!(line(b"no newline").unwrap(), b"no newline");
        assert_eq!(line(b"\xff\x01 \n").unwrap(), b"\xff\x01 ");
        assert_eq!(line(b"\n").unwrap(), b"");
        assert!(matches!(line(b""), Err(PasswdError::NoPassword)));
    }
}
