//! Real logins (spec: #authentication): a users file of names and argon2id
//! password hashes, and the [`PasswordVerifier`] that checks every PASS
//! against it.
//!
//! - [`file`]: the file format, pure; also the edits of `msglog passwd`.
//! - [`pool`]: where hashes are computed: off the async workers, a bounded
//!   number at a time.
//! - [`throttle`]: failed logins per source address, pure.
//!
//! A login goes: wait out its source's throttle delay (a sleep, holding no
//! verification slot), verify in the pool (an unknown name against a
//! stand-in hash, so it costs what a wrong password costs), record the
//! outcome, and answer. The handshake timeout bounds all of it: when it
//! fires the engine ends the connection and the verdict is dropped.

pub mod file;
pub mod pool;
pub mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Version};

use crate::defaults;
use crate::proto::engine::VerifyRequest;
use crate::server::diagnostics;
use crate::server::{PasswordVerifier, Peer, Verdict};

/// argon2id parameters: memory (KiB), passes, lanes.
pub use argon2::Params;
pub use file::{check_name, encode_name, Change, EncodedName, LineError, ParseError, UsersFile};
use pool::VerifyPool;
use throttle::{FailedLogins, Report, Source, ThrottleSettings};

/// The argon2id parameters new hashes get (the defaults, in one place).
pub fn default_params() -> Params {
    Params::new(
        defaults::ARGON2_MEMORY_KIB,
        defaults::ARGON2_PASSES,
        defaults::ARGON2_LANES,
        None,
    )
    .expect("the default argon2id parameters are valid")
}

/// Hashes `password` with argon2id, `params` and a fresh random salt from
/// the operating system: a PHC string for the users file.
pub fn hash_password(password: &[u8], params: &Params) -> Result<String, HashError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Hashing a password failed (the system's random source, or parameters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// Whether `password` hashes to `hash` (whose own parameters are used).
pub fn verify_password(password: &[u8], hash: &PasswordHash) -> bool {
    Argon2::default().verify_password(password, hash).is_ok()
}

/// How a login turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Verified,
    WrongPassword,
    UnknownName,
}

impl Check {
    fn reason(self) -> &'static str {
        match self {
            Check::Verified => "verified",
            Check::WrongPassword => "wrong password",
            Check::UnknownName => "unknown name",
        }
    }
}

/// The users of a file, ready to verify against.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<Vec<u8>, PasswordHash>,
    /// What an unknown name is verified against.
    stand_in: PasswordHash,
}

impl Users {
    /// The users of `file`, with a stand-in hash for unknown names made
    /// with the parameters most of them have (the defaults when none).
    pub fn new(file: &UsersFile) -> Result<Users, HashError> {
        let mut by_name = HashMap::new();
        // How many users have each (m, t, p, output length).
        type Key = (u32, u32, u32, Option<usize>);
        let mut counts: HashMap<Key, (usize, &Params)> = HashMap::new();
        for user in file.users() {
            by_name.insert(user.name.clone(), user.hash.clone());
            let p = &user.params;
            let key = (p.m_cost(), p.t_cost(), p.p_cost(), p.output_len());
            counts.entry(key).or_insert((0, p)).0 += 1;
        }
        let params = counts
            .into_values()
            .max_by_key(|(count, p)| (*count, p.m_cost(), p.t_cost()))
            .map_or_else(default_params, |(_, p)| p.clone());
        // Its password does not matter: an unknown name is refused whatever
        // the outcome; the stand-in is there for the work.
        let stand_in = hash_password(b"stand-in for unknown names", &params)?;
        let stand_in = PasswordHash::new(&stand_in).map_err(|e| HashError(e.to_string()))?;
        Ok(Users { by_name, stand_in })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    //= spec/protocol.md#authentication
    //# With a users file, a password MUST verify exactly when the NAME is in the file and the password hashes, with the salt and parameters of the NAME's PHC string, to its hash.
    /// Verifies `password` for `name`; slow on purpose (run it in the pool).
    pub fn check(&self, name: &[u8], password: &[u8]) -> Check {
        let known = self.by_name.get(name);
        //= spec/protocol.md#authentication
        //# A PASS for a NAME that is not in the users file MUST cost the server the same work as a wrong password for a NAME that is.
        let verified = verify_password(password, known.unwrap_or(&self.stand_in));
        match (known, verified) {
            (Some(_), true) => Check::Verified,
            (Some(_), false) => Check::WrongPassword,
            (None, _) => Check::UnknownName,
        }
    }
}

/// Why the users file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the users file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    //= spec/protocol.md#authentication
    //# A server MUST refuse a users file with a line that breaks these rules, or with two lines for the same name, and say which file, which line and what is wrong.
    #[error("users file {}, {error}", path.display())]
    Parse { path: PathBuf, error: ParseError },
    #[error("users file {}: {error}", path.display())]
    Hash { path: PathBuf, error: HashError },
}

/// Reads and parses the users file at `path`.
pub fn load_users(path: &Path) -> Result<Users, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file = UsersFile::parse(&bytes).map_err(|error| LoadError::Parse {
        path: path.to_owned(),
        error,
    })?;
    Users::new(&file).map_err(|error| LoadError::Hash {
        path: path.to_owned(),
        error,
    })
}

/// How `msglog serve --users` checks logins.
#[derive(Debug, Clone)]
pub struct UsersOptions {
    pub path: PathBuf,
    /// Verifications run at once.
    pub max_verifications: usize,
    /// The wait after a source's first failed login; zero turns it off.
    pub failure_delay: Duration,
}

impl UsersOptions {
    /// The defaults for the users file at `path`.
    pub fn new(path: PathBuf) -> UsersOptions {
        UsersOptions {
            path,
            max_verifications: defaults::max_verifications(),
            failure_delay: defaults::LOGIN_FAILURE_DELAY,
        }
    }

    fn throttle(&self) -> ThrottleSettings {
        ThrottleSettings {
            delay: self.failure_delay,
            max_delay: self
                .failure_delay
                .saturating_mul(defaults::LOGIN_FAILURE_DELAY_MAX_FACTOR),
            forget_after: defaults::LOGIN_FAILURES_FORGOTTEN_AFTER,
            max_sources: defaults::LOGIN_FAILURE_SOURCES,
            report_interval: diagnostics::INTERVAL,
        }
    }
}

/// Checks every PASS against the users file.
#[derive(Debug, Clone)]
pub struct UsersVerifier {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    options: UsersOptions,
    users: RwLock<Arc<Users>>,
    pool: VerifyPool,
    failures: Mutex<FailedLogins>,
    /// The task that reports counted failures when their summary is due.
    reporter: OnceLock<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Nothing counted may go unreported.
        let reports = lock(&self.failures).flush(Instant::now());
        report(&reports);
    }
}

fn lock(failures: &Mutex<FailedLogins>) -> std::sync::MutexGuard<'_, FailedLogins> {
    // A panic while it was held leaves the counts usable.
    failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UsersVerifier {
    /// Loads the users file; its errors name the file and the line.
    pub fn load(options: UsersOptions) -> Result<UsersVerifier, LoadError> {
        let users = load_users(&options.path)?;
        Ok(UsersVerifier {
            shared: Arc::new(Shared {
                users: RwLock::new(Arc::new(users)),
                pool: VerifyPool::new(options.max_verifications),
                failures: Mutex::new(FailedLogins::new(options.throttle())),
                reporter: OnceLock::new(),
                options,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.options.path
    }

    /// Users in force now.
    pub fn user_count(&self) -> usize {
        self.shared.current().len()
    }

    //= spec/protocol.md#authentication
    //# On SIGHUP the server MUST read the users file again; if the file cannot be used it MUST keep the users it had and report why, naming the file and the line.
    /// Reads the users file again; on success its users replace the old
    /// ones, on failure the old ones stay. Returns how many users are in
    /// force.
    pub async fn reload(&self) -> Result<usize, LoadError> {
        let path = self.shared.options.path.clone();
        // Parsing is quick, but the stand-in hash is slow on purpose.
        let users = tokio::task::spawn_blocking(move || load_users(&path))
            .await
            .map_err(|e| LoadError::Hash {
                path: self.shared.options.path.clone(),
                error: HashError(e.to_string()),
            })??;
        let count = users.len();
        *self
            .shared
            .users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(users);
        Ok(count)
    }

    /// [`reload`](Self::reload), with its outcome as a diagnostic line.
    pub async fn reload_and_report(&self) {
        match self.reload().await {
            Ok(count) => tracing::info!(
                users = count,
                file = %self.path().display(),
                "users file reloaded"
            ),
            Err(e) => tracing::error!("{e}; the users loaded before stay in force"),
        }
    }

    /// Starts the task that writes the summaries of counted failures when
    /// they are due; it ends when the verifier is dropped.
    fn ensure_reporter(&self) {
        self.shared.reporter.get_or_init(|| {
            let weak: Weak<Shared> = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(shared) = weak.upgrade() else { return };
                    let reports = lock(&shared.failures).sweep(Instant::now());
                    report(&reports);
                }
            });
        });
    }
}

impl Shared {
    fn current(&self) -> Arc<Users> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    //= spec/protocol.md#authentication
    //# The server MUST NOT write a password, or a hash from the users file, to its diagnostics at any level.
    // The password goes to the pool and nowhere else; lines about a login
    // name the peer, the name and the outcome, and a users file's errors
    // name the line, never quote it.
    async fn verify(self: Arc<Self>, request: VerifyRequest, peer: SocketAddr) -> bool {
        let source = Source::of(peer.ip());
        let wait = lock(&self.failures).admit(source, Instant::now());
        if !wait.is_zero() {
            // Outside the pool: a throttled source holds no slot.
            tokio::time::sleep(wait).await;
        }
        let users = self.current();
        let VerifyRequest { name, password } = request;
        let checked = name.clone();
        let check = self
            .pool
            .run(move || users.check(&checked, &password))
            .await;
        let now = Instant::now();
        let name = EncodedName::of(&name);
        match check {
            Some(Check::Verified) => {
                let counted = lock(&self.failures).succeeded(source, now);
                report(counted.as_slice());
                tracing::info!(peer = %peer, name = ?name, "login");
                true
            }
            Some(check) => {
                let failure = lock(&self.failures).failed(source, now);
                report(&failure.reports);
                //= spec/protocol.md#authentication
                //# The server MUST report each failed login with the peer's address and the name, and MUST limit how many such reports one source address can cause per interval.
                if failure.report_in_full {
                    tracing::warn!(
                        peer = %peer,
                        name = ?name,
                        reason = check.reason(),
                        failures = failure.failures,
                        waited_ms = wait.as_millis() as u64,
                        "login failed"
                    );
                }
                false
            }
            None => {
                tracing::error!(peer = %peer, name = ?name, "password verification failed internally; login refused");
                false
            }
        }
    }
}

/// Writes the summaries of counted failures.
fn report(reports: &[Report]) {
    for r in reports {
        tracing::warn!(
            source = %r.source,
            failed = r.suppressed.count,
            "failed logins from {}: {} more in the last {}",
            r.source,
            r.suppressed.count,
            r.suppressed.over_text()
        );
    }
}

impl PasswordVerifier for UsersVerifier {
    fn verify(&self, request: VerifyRequest, peer: &Peer) -> Verdict {
        self.ensure_reporter();
        Box::pin(self.shared.clone().verify(request, peer.addr))
    }
}

//= spec/protocol.md#authentication
//# Without a users file the server MUST verify passwords by the reference's rule, and MUST say when it starts, in one line, that any client can log in under any name with any password whose first byte is odd.
/// The line the server writes at start about how it checks passwords.
pub fn announce(users: Option<&UsersVerifier>) {
    match users {
        None => tracing::warn!(
            "no users file (--users): any client can log in under any name with any password whose first byte is odd (the reference's rule)"
        ),
        Some(u) => {
            let count = u.user_count();
            let verifications = u.shared.pool.size();
            let delay = u.shared.options.failure_delay;
            if count == 0 {
                tracing::warn!(file = %u.path().display(), "users file has no users: every login is refused; add one with `msglog passwd`");
            }
            tracing::info!(
                file = %u.path().display(),
                users = count,
                verifications,
                failure_delay_ms = delay.as_millis() as u64,
                "logins checked against the users file (argon2id)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(256, 1, 1, None).unwrap()
    }

    fn file_of(users: &[(&[u8], &[u8])], params: &Params) -> UsersFile {
        let mut file = UsersFile::default();
        for (name, password) in users {
            file.set(name, &hash_password(password, params).unwrap())
                .unwrap();
        }
        file
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# With a users file, a password MUST verify exactly when the NAME is in the file and the password hashes, with the salt and parameters of the NAME's PHC string, to its hash.
    #[test]
    fn a_password_verifies_only_for_its_own_name() {
        let users = Users::new(&file_of(
            &[(b"alice", b"wonderland"), (b"bob", b"builder")],
            &cheap(),
        ))
        .unwrap();
        assert_eq!(users.check(b"alice", b"wonderland"), Check::Verified);
        assert_eq!(users.check(b"alice", b"builder"), Check::WrongPassword);
        assert_eq!(users.check(b"alice", b"A"), Check::WrongPassword);
        assert_eq!(users.check(b"bob", b"builder"), Check::Verified);
        assert_eq!(users.check(b"carol", b"wonderland"), Check::UnknownName);
        assert_eq!(users.check(b"Alice", b"wonderland"), Check::UnknownName);
    }

    #[test]
    fn hashes_record_their_parameters_and_a_fresh_salt() {
        let one = hash_password(b"pw", &cheap()).unwrap();
        let two = hash_password(b"pw", &cheap()).unwrap();
        assert!(one.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{one}");
        assert_ne!(one, two, "each hash has its own salt");
        let defaults = hash_password(b"pw", &default_params()).unwrap();
        assert!(
            defaults.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{defaults}"
        );
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# A PASS for a NAME that is not in the users file MUST cost the server the same work as a wrong password for a NAME that is.
    #[test]
    fn unknown_names_are_verified_against_a_stand_in_with_the_most_common_parameters() {
        let other = Params::new(512, 2, 1, None).unwrap();
        let mut file = file_of(&[(b"a", b"1"), (b"b", b"2")], &cheap());
        file.set(b"c", &hash_password(b"3", &other).unwrap())
            .unwrap();
        let users = Users::new(&file).unwrap();
        let stand_in = Params::try_from(&users.stand_in).unwrap();
        assert_eq!(
            (stand_in.m_cost(), stand_in.t_cost(), stand_in.p_cost()),
            (256, 1, 1)
        );
        let empty = Users::new(&UsersFile::default()).unwrap();
        let stand_in = Params::try_from(&empty.stand_in).unwrap();
        assert_eq!(stand_in.m_cost(), defaults::ARGON2_MEMORY_KIB);
        assert_eq!(empty.check(b"a", b"1"), Check::UnknownName);
    }

    //= spec/protocol.md#authentication
    //= type=test
    //# On SIGHUP the server MUST read the users file again; if the file cannot be used it MUST keep the users it had and report why, naming the file and the line.
    #[tokio::test]
    async fn a_reload_replaces_the_users_and_a_broken_file_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.txt");
        std::fs::write(&path, file_of(&[(b"a", b"1")], &cheap()).to_bytes()).unwrap();
        let verifier = UsersVerifier::load(UsersOptions::new(path.clone())).unwrap();
        assert_eq!(verifier.user_count(), 1);
        std::fs::write(
            &path,
            file_of(&[(b"a", b"1"), (b"b", b"2")], &cheap()).to_bytes(),
        )
        .unwrap();
        assert_eq!(verifier.reload().await.unwrap(), 2);
        let mut broken = std::fs::read(&path).unwrap();
        broken.extend_from_slice(b"# fine\nmallory\n");
        std::fs::write(&path, broken).unwrap();
        let error = verifier.reload().await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "users file {}, line 4: no ':' after the name; a user line is NAME:PHC (write a ':' in a name as %3A)",
                path.display()
            )
        );
        assert_eq!(verifier.user_count(), 2, "the old users stay in force");
    }
}
