//! `msglog completions SHELL` and `msglog man` as a user runs them: what
//! they print is accepted by the tools that read it. (That every subcommand
//! and option is in it is checked against the clap definitions in
//! src/cli/generate.rs.)

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::process::BIN;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_shell_gets_a_script_for_msglog() {
    for (shell, marker) in [
        ("bash", "complete -F _msglog"),
        ("zsh", "#compdef msglog"),
        ("fish", "complete -c msglog"),
    ] {
        let (code, script, stderr) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains("serve") && script.contains("frame-buffer-budget"));
    }
}

#[test]
fn the_bash_script_is_valid_bash() {
    let (_, script, _) = run(&["completions", "bash"]);
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = bash.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error_that_lists_the_shells() {
    let (code, script, stderr) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2));
    assert!(script.is_empty());
    assert!(stderr.contains("bash, zsh, fish"), "{stderr}");
}

#[test]
fn the_man_page_is_one_roff_page() {
    let (code, page, stderr) = run(&["man"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(page.matches(".TH msglog 1").count(), 1, "{page}");
    assert!(page.contains(".SH \"MSGLOG SERVE\""));
    assert!(page.contains("\\-\\-metrics"));
    // groff (in Debian's groff-base, which man-db needs) reads it without a
    // warning.
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff is needed to check the man page (Debian: groff-base)");
    groff
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = groff.wait_with_output().unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
}
