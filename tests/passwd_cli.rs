//! `msglog passwd FILE NAME [--delete]` as a user runs it: the password on
//! standard input, the file rewritten atomically with everything else in
//! it kept.

mod common;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::process::BIN;
use common::users::{cheap, write_users};
use msglog::server::users::{verify_password, UsersFile};

/// Runs `msglog passwd ARGS` in `dir` with `stdin` as its standard input.
fn passwd(dir: &Path, args: &[&std::ffi::OsStr], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("passwd")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may refuse before reading: a broken pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// Whether `password` verifies for `name` in the users file at `path`.
fn verifies(path: &Path, name: &[u8], password: &[u8]) -> bool {
    let file = UsersFile::parse(&std::fs::read(path).unwrap()).unwrap();
    let user = file.users().find(|u| u.name == name).expect("the user");
    verify_password(password, &user.hash)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn add_replace_and_delete_keep_every_other_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.txt");

    let out = passwd(dir.path(), &[os("users.txt"), os("alice")], b"first one\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&path), 0o600, "a new users file is private");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"),
        "{text}"
    );
    assert!(verifies(&path, b"alice", b"first one"));

    // Other users, comments, blank lines and CR LF endings stay as they are.
    let mut others = std::fs::read(&path).unwrap();
    others.splice(0..0, b"# team\r\n\r\n".iter().copied());
    write_users(&dir.path().join("bob.txt"), &[(b"bob", b"b")], &cheap());
    others.extend_from_slice(&std::fs::read(dir.path().join("bob.txt")).unwrap());
    others.extend_from_slice(b"# last line, no newline");
    std::fs::write(&path, &others).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let out = passwd(
        dir.path(),
        &[os("users.txt"), os("alice")],
        b"second one\r\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("set a new password for \"alice\""));
    let after = std::fs::read(&path).unwrap();
    let alice_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .find(|l| l.starts_with("alice:"))
            .unwrap()
            .to_owned()
    };
    let expected = String::from_utf8(others.clone())
        .unwrap()
        .replace(&alice_line(&others), &alice_line(&after));
    assert_eq!(
        String::from_utf8(after).unwrap(),
        expected,
        "only alice's line changed"
    );
    assert!(verifies(&path, b"alice", b"second one"));
    assert!(!verifies(&path, b"alice", b"first one"));
    assert!(verifies(&path, b"bob", b"b"));
    assert_eq!(mode(&path), 0o640, "the mode is kept");

    // A name with bytes the file escapes, and one that is not UTF-8.
    let odd = std::ffi::OsStr::from_bytes(b"c:d%\xff");
    let out = passwd(dir.path(), &[os("users.txt"), odd], b"third\n");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    assert!(text.contains("\r\nc%3Ad%25%FF:$argon2id$"), "{text}");
    assert!(verifies(&path, b"c:d%\xff", b"third"));

    let out = passwd(
        dir.path(),
        &[os("users.txt"), os("alice"), os("--delete")],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("alice"), "{text}");
    assert!(text.starts_with("# team\r\n\r\nbob:$argon2id$"), "{text}");
    assert!(text.contains("# last line, no newline\r\n"), "{text}");
    assert_eq!(mode(&path), 0o640);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn refusals_change_nothing_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_users(&dir.path().join("users.txt"), &[(b"bob", b"b")], &cheap());
    let before = std::fs::read(&path).unwrap();
    let unchanged = || assert_eq!(std::fs::read(&path).unwrap(), before);

    let out = passwd(
        dir.path(),
        &[os("users.txt"), os("carol"), os("--delete")],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "msglog passwd: users.txt: no user \"carol\"; nothing was changed\n"
    );
    unchanged();

    for (stdin, why) in [
        (&b"\n"[..], "the password is empty"),
        (b"", "no password on standard input"),
    ] {
        let out = passwd(dir.path(), &[os("users.txt"), os("carol")], stdin);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{out:?}"
        );
        unchanged();
    }
    // The name is checked before the password is asked for.
    let out = passwd(dir.path(), &[os("users.txt"), os("")], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "msglog passwd: users.txt: the name is empty; nothing was changed\n"
    );
    unchanged();

    // A file that does not parse is left alone, whatever the change.
    let mut broken = before.clone();
    broken.extend_from_slice(b"carol secret\n");
    std::fs::write(&path, &broken).unwrap();
    let out = passwd(dir.path(), &[os("users.txt"), os("dave")], b"pw\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "msglog passwd: users.txt, line 2: no ':' after the name; a user line is NAME:PHC (write a ':' in a name as %3A); fix that line first: nothing was changed\n"
    );
    assert_eq!(std::fs::read(&path).unwrap(), broken);
}

#[test]
fn the_password_never_comes_from_or_goes_to_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // No argument or option takes a password: each is a usage error, and
    // no file is written.
    for args in [
        &["users.txt", "alice", "hunter2"][..],
        &["users.txt", "alice", "--password", "hunter2"],
        &["users.txt", "alice", "--password=hunter2"],
    ] {
        let args: Vec<_> = args.iter().map(|a| os(a)).collect();
        let out = passwd(dir.path(), &args, b"hunter2\n");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!dir.path().join("users.txt").exists());
    }
    let help = Command::new(BIN)
        .args(["passwd", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--delete") && !help.contains("--password"),
        "{help}"
    );
    // What it prints names the user, never the password.
    let out = passwd(dir.path(), &[os("users.txt"), os("alice")], b"hunter2\n");
    assert!(out.status.success());
    let printed = [out.stdout, out.stderr].concat();
    assert!(!String::from_utf8_lossy(&printed).contains("hunter2"));
}

#[test]
fn a_symbolic_link_stays_and_its_target_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let target = write_users(
        &dir.path().join("etc/users.txt"),
        &[(b"bob", b"b")],
        &cheap(),
    );
    std::os::unix::fs::symlink("etc/users.txt", dir.path().join("users.txt")).unwrap();
    let out = passwd(dir.path(), &[os("users.txt"), os("alice")], b"pw\n");
    assert!(out.status.success(), "{out:?}");
    let link = std::fs::symlink_metadata(dir.path().join("users.txt")).unwrap();
    assert!(link.file_type().is_symlink());
    assert!(verifies(&target, b"alice", b"pw"));
    assert!(verifies(&target, b"bob", b"b"));
}
