//! Who may read: users with argon2 password hashes from `pipeline.yaml`
//! (`server.users`, filled from the environment), a Bearer JWT (HS256, with
//! issuer and expiry) from `POST /auth/login`, or HTTP Basic (what Power BI's
//! OData connector sends).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::Sha256;

use medallion_pipeline::ServerSpec;

/// The `iss` of every token this server signs, and the only one it takes.
pub const ISSUER: &str = "medallion";

/// The shortest JWT secret accepted, in bytes.
pub const MIN_SECRET: usize = 32;

/// Secrets found in tutorials and default configurations.
const WELL_KNOWN: [&str; 10] = [
    "secret",
    "changeme",
    "change-me",
    "your-secret-key",
    "supersecret",
    "mysecret",
    "jwt-secret",
    "password",
    "your-256-bit-secret",
    "please-change-this-secret-key-in-production",
];

/// A Basic credential, once verified, is trusted this long without hashing
/// the password again (argon2 is slow on purpose; Power BI sends Basic with
/// every request).
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Passwords hashed at once (each argon2 check takes tens of milliseconds
/// and 19 MiB), so that checks cannot take every thread or all memory.
const HASHING_AT_ONCE: usize = 2;

/// How long a password check waits for a hashing slot before the answer is
/// 503 with Retry-After.
const HASHING_QUEUE: Duration = Duration::from_secs(1);

/// Wrong passwords for one user name, from any addresses, before addresses
/// that have failed for it have to wait too, as a multiple of the failures
/// one address may have (`server.failed_logins_before_wait`); an address
/// that has not failed is never kept from trying, so the real user is not
/// locked out.
const USER_FAILURES_PER_ADDRESS_FAILURE: u32 = 4;

/// The longest an address has to wait between tries.
const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// Failures older than this are forgotten.
const FAILURES_KEPT: Duration = Duration::from_secs(900);

/// Addresses and user names whose failures are remembered, at most (past
/// this, the oldest are forgotten first).
const FAILURES_TRACKED: usize = 100_000;

/// The credentials check.
pub struct Auth {
    secret: Vec<u8>,
    token_minutes: u64,
    users: HashMap<String, String>,
    /// A key of this process's own, for fingerprints of verified credentials.
    fingerprint_key: [u8; 32],
    /// [`Auth::fingerprint`] of a verified user and password → when it was verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Who failed recently, and how long they must wait.
    failures: Mutex<Failures>,
    /// Hashing slots.
    slots: Slots,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No credentials at all.
    Missing,
    /// Credentials that do not hold (bad token, bad password).
    Invalid(String),
    /// Too many passwords are being checked at once; try again.
    Busy,
    /// Too many wrong passwords from this address (or for this user from
    /// it): try again after this long.
    Throttled(Duration),
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: u64,
    exp: u64,
}

impl Auth {
    /// Checks the settings: the secret must be set, long and not a known
    /// default, unless `insecure_dev` (then a random one is made, and a
    /// `dev` user with password `dev` is added when there is no user).
    pub fn new(spec: &ServerSpec, insecure_dev: bool) -> Result<Self, String> {
        let mut users: HashMap<String, String> = spec
            .users
            .iter()
            .filter_map(|(user, hash)| Some((user.clone(), hash.clone().filter(|h| !h.trim().is_empty())?)))
            .collect();
        for (user, hash) in &users {
            PasswordHash::new(hash).map_err(|e| {
                format!(
                    "server.users.{user}: not an argon2 hash ({e})\n  hint: make one with `host hash-password`, and give it through an environment variable"
                )
            })?;
        }
        let secret = spec.jwt_secret.clone().unwrap_or_default();
        let problem = if secret.is_empty() {
            Some("server.jwt_secret is not set".to_owned())
        } else if secret.len() < MIN_SECRET {
            Some(format!("server.jwt_secret is {} bytes; it must be at least {MIN_SECRET}", secret.len()))
        } else if WELL_KNOWN.iter().any(|w| secret.eq_ignore_ascii_case(w))
            || secret.chars().all(|c| secret.starts_with(c))
        {
            Some("server.jwt_secret is a well-known default".to_owned())
        } else {
            None
        };
        let secret = match (problem, insecure_dev) {
            (None, _) => secret.into_bytes(),
            (Some(problem), false) => {
                return Err(format!(
                    "{problem}\n  hint: export MEDALLION_JWT_SECRET=\"$(openssl rand -base64 48)\", or start with --insecure-dev on a development machine"
                ));
            }
            (Some(problem), true) => {
                tracing::warn!("{problem}: --insecure-dev, so a random secret signs this process's tokens");
                random_bytes(48)?
            }
        };
        if users.is_empty() {
            if !insecure_dev {
                return Err("server.users is empty: nobody could log in\n  hint: add a user with a hash from `host hash-password`, or start with --insecure-dev".to_owned());
            }
            tracing::warn!("--insecure-dev and no user configured: user `dev`, password `dev`");
            users.insert("dev".to_owned(), hash_password("dev")?);
        }
        let mut fingerprint_key = [0; 32];
        fingerprint_key.copy_from_slice(&random_bytes(32)?);
        Ok(Auth {
            secret,
            fingerprint_key,
            token_minutes: spec.token_minutes.max(1),
            users,
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(Failures::new(spec.failed_logins_before_wait)),
            slots: Slots::default(),
        })
    }

    /// A token for `user` if `password` is theirs; `source` is the client's
    /// address (failures from it make it wait).
    pub fn login(&self, user: &str, password: &str, source: Option<IpAddr>) -> Result<(String, u64), Refused> {
        if !self.password_holds(user, password, source)? {
            return Err(Refused::Invalid("wrong user name or password".to_owned()));
        }
        let now = unix_now();
        let lifetime = self.token_minutes * 60;
        let claims = Claims { sub: user.to_owned(), iss: ISSUER.to_owned(), iat: now, exp: now + lifetime };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&self.secret))
                .map_err(|e| Refused::Invalid(format!("cannot sign a token: {e}")))?;
        Ok((token, lifetime))
    }

    /// Whether checking `authorization` means hashing a password (Basic
    /// credentials not verified recently): work to keep off the threads that
    /// answer requests.
    pub fn needs_hashing(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return false };
        let fingerprint = self.fingerprint(&user, &password);
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified.get(&fingerprint).is_none_or(|at| at.elapsed() >= VERIFIED_FOR)
    }

    /// The user an `Authorization` header names, if its credentials hold;
    /// `source` is the client's address.
    pub fn check(&self, authorization: Option<&str>, source: Option<IpAddr>) -> Result<String, Refused> {
        let header = authorization.map(str::trim).filter(|h| !h.is_empty()).ok_or(Refused::Missing)?;
        let (scheme, credentials) = header.split_once(' ').unwrap_or((header, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_issuer(&[ISSUER]);
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
            validation.leeway = 0;
            let data =
                jsonwebtoken::decode::<Claims>(credentials, &DecodingKey::from_secret(&self.secret), &validation)
                    .map_err(|e| Refused::Invalid(format!("bad token: {e}")))?;
            if !self.users.contains_key(&data.claims.sub) {
                return Err(Refused::Invalid("bad token: unknown user".to_owned()));
            }
            return Ok(data.claims.sub);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = basic_credentials(header)
                .ok_or_else(|| Refused::Invalid("bad Basic credentials: not base64 of user:password".to_owned()))?;
            if self.password_holds(&user, &password, source)? {
                return Ok(user);
            }
            return Err(Refused::Invalid("wrong user name or password".to_owned()));
        }
        Err(Refused::Invalid(format!(
            "unsupported scheme `{}`: use Bearer or Basic",
            scheme.chars().take(20).collect::<String>()
        )))
    }

    fn password_holds(&self, user: &str, password: &str, source: Option<IpAddr>) -> Result<bool, Refused> {
        let fingerprint = self.fingerprint(user, password);
        {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.get(&fingerprint).is_some_and(|at| at.elapsed() < VERIFIED_FOR) {
                return Ok(true);
            }
            verified.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        }
        {
            let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(wait) = failures.wait(source, user) {
                return Err(Refused::Throttled(wait));
            }
            failures.count(source, user, self.users.contains_key(user));
        }
        // Released when dropped, also if hashing panics.
        let Some(slot) = self.slots.take(HASHING_QUEUE) else {
            self.failures.lock().unwrap_or_else(PoisonError::into_inner).uncount(source, user, false);
            return Err(Refused::Busy);
        };
        let holds = match self.users.get(user) {
            Some(hash) => PasswordHash::new(hash)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()),
            None => {
                // The same work as for a real user, so that timing does not
                // tell which names exist.
                if let Ok(salt) = salt() {
                    let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
                }
                false
            }
        };
        drop(slot);
        if holds {
            self.failures.lock().unwrap_or_else(PoisonError::into_inner).uncount(source, user, true);
            self.verified.lock().unwrap_or_else(PoisonError::into_inner).insert(fingerprint, Instant::now());
        }
        Ok(holds)
    }

    /// An HMAC of the user name and the password, each prefixed by its
    /// length (so that no two pairs give the same input), under a key that
    /// lives and dies with this process: what the cache of verified
    /// credentials keeps instead of anything a leaked memory dump could test
    /// guesses against offline.
    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.fingerprint_key) else { return [0; 32] };
        for field in [user, password] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

/// The user and password of a `Basic` header, if it is one and decodes.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Recent wrong passwords: by address (an IPv6 network of 64 bits counts as
/// one address), by configured user name, and by address and user name.
struct Failures {
    /// Failures an address may have before it waits.
    free: u32,
    by_source: HashMap<IpAddr, Failed>,
    by_user: HashMap<String, Failed>,
    by_pair: HashMap<(IpAddr, String), Failed>,
}

/// Failures of one address or user name.
#[derive(Clone, Copy)]
struct Failed {
    count: u32,
    last: Instant,
}

impl Failed {
    /// How long after the last failure the next try must wait.
    fn wait(self, free: u32) -> Duration {
        if self.count < free {
            return Duration::ZERO;
        }
        let doublings = (self.count - free).min(16);
        Duration::from_secs(1u64 << doublings).min(LONGEST_WAIT)
    }

    fn remaining(self, free: u32) -> Option<Duration> {
        self.wait(free).checked_sub(self.last.elapsed()).filter(|left| !left.is_zero())
    }
}

/// The address a client is counted under: itself, or its IPv6 /64.
fn network(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

impl Failures {
    fn new(free: u32) -> Self {
        Failures { free, by_source: HashMap::new(), by_user: HashMap::new(), by_pair: HashMap::new() }
    }

    /// How long a try from `source` for `user` must still wait, if at all.
    fn wait(&self, source: Option<IpAddr>, user: &str) -> Option<Duration> {
        let source = source.map(network)?;
        if let Some(left) = self.by_source.get(&source).and_then(|f| f.remaining(self.free)) {
            return Some(left);
        }
        // Guesses at one user spread over addresses: only addresses that
        // have recently failed for that user wait, so the user, from an
        // address that has not, still gets in.
        let failed_here =
            self.by_pair.get(&(source, user.to_owned())).is_some_and(|f| f.last.elapsed() < FAILURES_KEPT);
        let per_user = self.free.saturating_mul(USER_FAILURES_PER_ADDRESS_FAILURE);
        self.by_user.get(user).filter(|_| failed_here).and_then(|f| f.remaining(per_user))
    }

    /// Counts a try as failed before its password is checked, so that many
    /// tries at once from one address cannot all pass [`Failures::wait`];
    /// `known` when `user` is configured (only those are tracked by name).
    fn count(&mut self, source: Option<IpAddr>, user: &str, known: bool) {
        let now = Instant::now();
        let bump = |failed: &mut Failed| {
            if failed.last.elapsed() > FAILURES_KEPT {
                failed.count = 0;
            }
            failed.count = failed.count.saturating_add(1);
            failed.last = now;
        };
        let source = source.map(network);
        if let Some(source) = source {
            bump(self.by_source.entry(source).or_insert(Failed { count: 0, last: now }));
        }
        if known {
            bump(self.by_user.entry(user.to_owned()).or_insert(Failed { count: 0, last: now }));
            if let Some(source) = source {
                bump(self.by_pair.entry((source, user.to_owned())).or_insert(Failed { count: 0, last: now }));
            }
        }
        if self.by_source.len() + self.by_pair.len() > FAILURES_TRACKED {
            self.by_source.retain(|_, f| f.last.elapsed() < FAILURES_KEPT / 8);
            self.by_pair.retain(|_, f| f.last.elapsed() < FAILURES_KEPT / 8);
        }
    }

    /// Takes back the count of a try that was not a wrong password: the
    /// password held (the address starts afresh), or no check took place.
    fn uncount(&mut self, source: Option<IpAddr>, user: &str, held: bool) {
        let down = |failed: Option<&mut Failed>| {
            if let Some(failed) = failed {
                failed.count = failed.count.saturating_sub(1);
            }
        };
        let source = source.map(network);
        down(self.by_user.get_mut(user));
        if let Some(source) = source {
            if held {
                self.by_source.remove(&source);
                self.by_pair.remove(&(source, user.to_owned()));
            } else {
                down(self.by_source.get_mut(&source));
                down(self.by_pair.get_mut(&(source, user.to_owned())));
            }
        }
    }
}

/// Hashing slots: a counting semaphore whose permits go back when dropped.
#[derive(Default)]
struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
}

/// A hashing slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Slots {
    /// A slot, waiting for one at most `patience`.
    fn take(&self, patience: Duration) -> Option<Slot<'_>> {
        let busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut busy, _) = self
            .freed
            .wait_timeout_while(busy, patience, |busy| *busy >= HASHING_AT_ONCE)
            .unwrap_or_else(PoisonError::into_inner);
        if *busy >= HASHING_AT_ONCE {
            return None;
        }
        *busy += 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.freed.notify_one();
    }
}

/// An argon2id hash of `password` with a random salt, as `server.users` takes it.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes(), &salt()?)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

fn salt() -> Result<SaltString, String> {
    SaltString::encode_b64(&random_bytes(16)?).map_err(|e| format!("cannot encode a salt: {e}"))
}

/// `n` bytes from the operating system's random generator; an error, never
/// a weaker source, when it cannot give them.
fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("the operating system gave no random bytes: {e}"))?;
    Ok(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(secret: &str) -> ServerSpec {
        let mut spec = ServerSpec { jwt_secret: Some(secret.to_owned()), ..ServerSpec::default() };
        spec.users.insert("ana".to_owned(), Some(hash_password("s3cret-pass").expect("hash")));
        spec
    }

    #[test]
    fn weak_secrets_are_refused_unless_insecure_dev() {
        for secret in ["", "short", "secret", &"a".repeat(40)] {
            assert!(Auth::new(&spec(secret), false).is_err(), "{secret:?} accepted");
            assert!(Auth::new(&spec(secret), true).is_ok());
        }
        assert!(Auth::new(&spec("a-long-random-secret-of-more-than-32-bytes"), false).is_ok());
    }

    #[test]
    fn tokens_and_basic() {
        let auth = Auth::new(&spec("a-long-random-secret-of-more-than-32-bytes"), false).expect("auth");
        assert!(auth.login("ana", "wrong", None).is_err());
        assert!(auth.login("bob", "s3cret-pass", None).is_err());
        let (token, _) = auth.login("ana", "s3cret-pass", None).expect("login");
        assert_eq!(auth.check(Some(&format!("Bearer {token}")), None), Ok("ana".to_owned()));
        let basic = base64::engine::general_purpose::STANDARD.encode("ana:s3cret-pass");
        assert_eq!(auth.check(Some(&format!("Basic {basic}")), None), Ok("ana".to_owned()));
        assert_eq!(auth.check(None, None), Err(Refused::Missing));
        let other = Auth::new(&spec("another-long-random-secret-of-32-bytes-plus"), false).expect("auth");
        assert!(other.check(Some(&format!("Bearer {token}")), None).is_err(), "a token signed with another secret");
    }

    #[test]
    fn fingerprints_tell_every_user_and_password_apart() {
        let auth = Auth::new(&spec("a-long-random-secret-of-more-than-32-bytes"), false).expect("auth");
        assert_ne!(auth.fingerprint("a:b", "c"), auth.fingerprint("a", "b:c"));
        assert_ne!(auth.fingerprint("ab", "c"), auth.fingerprint("a", "bc"));
        assert_eq!(auth.fingerprint("ana", "s3cret-pass"), auth.fingerprint("ana", "s3cret-pass"));
        let other = Auth::new(&spec("a-long-random-secret-of-more-than-32-bytes"), false).expect("auth");
        assert_ne!(
            auth.fingerprint("ana", "s3cret-pass"),
            other.fingerprint("ana", "s3cret-pass"),
            "a key per process"
        );
    }

    #[test]
    fn an_address_that_keeps_failing_waits_and_others_do_not() {
        let auth = Auth::new(&spec("a-long-random-secret-of-more-than-32-bytes"), false).expect("auth");
        let (attacker, user) = (Some(IpAddr::from([127, 0, 0, 2])), Some(IpAddr::from([127, 0, 0, 1])));
        for _ in 0..ServerSpec::default().failed_logins_before_wait {
            assert!(matches!(auth.login("ana", "guess", attacker), Err(Refused::Invalid(_))));
        }
        assert!(matches!(auth.login("ana", "guess", attacker), Err(Refused::Throttled(_))));
        assert!(auth.login("ana", "s3cret-pass", user).is_ok(), "the real user is not locked out");
        assert!(auth.login("ana", "s3cret-pass", attacker).is_ok(), "a verified credential needs no hashing");
    }

    #[test]
    fn a_slot_is_given_back_even_when_its_holder_panics() {
        let slots = Slots::default();
        let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _slot = slots.take(Duration::ZERO);
            panic!("hashing failed");
        }));
        assert!(taken.is_err());
        let all: Vec<_> = (0..HASHING_AT_ONCE).filter_map(|_| slots.take(Duration::ZERO)).collect();
        assert_eq!(all.len(), HASHING_AT_ONCE);
        assert!(slots.take(Duration::from_millis(10)).is_none(), "no slot past the limit");
    }

    #[test]
    fn the_addresses_of_one_ipv6_network_count_as_one() {
        let parse = |text: &str| text.parse::<IpAddr>().expect("an address");
        assert_eq!(network(parse("2001:db8::1")), network(parse("2001:db8::ffff:1")));
        assert_ne!(network(parse("2001:db8::1")), network(parse("2001:db8:0:1::1")));
        assert_eq!(network(parse("::ffff:127.0.0.2")), parse("127.0.0.2"));
    }
}
