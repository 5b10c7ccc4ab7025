//! Writes a fresh set of test certificates into a directory, for the
//! Python client's TLS tests (which cannot make certificates with the
//! standard library): `ca.pem`; `server.pem`/`server.key` for 127.0.0.1 and
//! localhost; `alice.pem`/`alice.key`, a client certificate for the name
//! `alice`. Test material only: the keys are not protected.
//!
//!     cargo run --example tls_test_certs -- DIR

// Shared with the Rust tests, which use all of it.
#[allow(dead_code)]
#[path = "../tests/common/certs.rs"]
mod certs;

use certs::{Ca, Validity};

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: tls_test_certs DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("tls_test_certs: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let ca = Ca::new(&dir, "ca");
    ca.server("server", Validity::Now);
    ca.client("alice", "alice", None, Validity::Now);
    println!("{}", dir.display());
}
