//! The options of `msglog serve` about logins: the users file, how many
//! passwords are verified at once, and the delay after failed logins.

use std::path::PathBuf;
use std::time::Duration;

use msglog::defaults;
use msglog::server::users::UsersOptions;

use super::values::{seconds, secs_text, whole, SecondsRange};

/// The delay after a failed login: none (0) up to a minute.
const FAILURE_DELAY: SecondsRange = SecondsRange {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};

#[derive(Debug, Clone, clap::Args)]
pub struct UsersArgs {
    /// Users file (NAME:PHC lines, argon2id; write it with `msglog passwd`):
    /// a PASS is accepted only for a NAME in it whose password verifies;
    /// SIGHUP reads it again. Without it, any password whose first byte is
    /// odd is accepted, under any name (the reference's rule).
    #[arg(long, env = "MSGLOG_USERS", value_name = "FILE")]
    users: Option<PathBuf>,
    /// Passwords verified at once (1 to 1024; default: one per CPU); further
    /// logins wait their turn, logged-in clients never do.
    #[arg(long, env = "MSGLOG_MAX_VERIFICATIONS", value_name = "N", value_parser = whole::<usize>(1, 1024), requires = "users")]
    max_verifications: Option<usize>,
    /// Seconds (0 to 60) the next login from a source address waits after a
    /// failed one; twice as long after each further failure, at most 32
    /// times as long; reset by a success or 10 minutes without failures.
    /// 0 turns it off.
    #[arg(long, env = "MSGLOG_LOGIN_FAILURE_DELAY", value_name = "SECS", default_value = secs_text(defaults::LOGIN_FAILURE_DELAY), value_parser = seconds(FAILURE_DELAY), requires = "users")]
    login_failure_delay: Duration,
}

impl UsersArgs {
    /// How to check logins, with a users file; `None` for the reference's rule.
    pub fn options(&self) -> Option<UsersOptions> {
        let path = self.users.clone()?;
        let defaults = UsersOptions::new(path);
        Some(UsersOptions {
            max_verifications: self.max_verifications.unwrap_or(defaults.max_verifications),
            failure_delay: self.login_failure_delay,
            ..defaults
        })
    }
}
