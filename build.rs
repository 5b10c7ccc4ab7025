//! `MSGLOG_LOOM=1 cargo test --lib log_writer::loom` builds the log writer on
//! loom's locks and threads and model-checks it (src/server/log_writer.rs).
//! A cfg of this crate alone, set here, rather than `RUSTFLAGS="--cfg ..."`:
//! that would reach every dependency too, so none of an ordinary build could
//! be reused, and Tokio and bytes react to `--cfg loom` themselves.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MSGLOG_LOOM");
    println!("cargo::rustc-check-cfg=cfg(msglog_loom)");
    if std::env::var_os("MSGLOG_LOOM").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=msglog_loom");
    }
}
