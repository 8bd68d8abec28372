//! Who may read: users with argon2 password hashes from `pipeline.yaml`
//! (`server.users`, filled from the environment), a Bearer JWT (HS256, with
//! issuer and expiry) from `POST /auth/login`, or HTTP Basic (what Power BI's
//! OData connector sends).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
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
/// and 19 MiB): a flood of wrong passwords is refused, not queued, and cannot
/// take every thread or all memory.
const HASHING_AT_ONCE: usize = 1;

/// The credentials check.
pub struct Auth {
    secret: Vec<u8>,
    token_minutes: u64,
    users: HashMap<String, String>,
    /// A key of this process's own, for fingerprints of verified credentials.
    fingerprint_key: [u8; 32],
    /// [`Auth::fingerprint`] of a verified user and password → when it was verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Password checks in progress.
    hashing: std::sync::atomic::AtomicUsize,
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
            hashing: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A token for `user` if `password` is theirs.
    pub fn login(&self, user: &str, password: &str) -> Result<(String, u64), Refused> {
        if !self.password_holds(user, password)? {
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

    /// The user an `Authorization` header names, if its credentials hold.
    pub fn check(&self, authorization: Option<&str>) -> Result<String, Refused> {
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
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| Refused::Invalid("bad Basic credentials: not base64 of user:password".to_owned()))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Refused::Invalid("bad Basic credentials: not user:password".to_owned()))?;
            if self.password_holds(user, password)? {
                return Ok(user.to_owned());
            }
            return Err(Refused::Invalid("wrong user name or password".to_owned()));
        }
        Err(Refused::Invalid(format!(
            "unsupported scheme `{}`: use Bearer or Basic",
            scheme.chars().take(20).collect::<String>()
        )))
    }

    fn password_holds(&self, user: &str, password: &str) -> Result<bool, Refused> {
        use std::sync::atomic::Ordering;
        let fingerprint = self.fingerprint(user, password);
        {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.get(&fingerprint).is_some_and(|at| at.elapsed() < VERIFIED_FOR) {
                return Ok(true);
            }
            verified.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        }
        if self.hashing.fetch_add(1, Ordering::SeqCst) >= HASHING_AT_ONCE {
            self.hashing.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Busy);
        }
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
        self.hashing.fetch_sub(1, Ordering::SeqCst);
        if holds {
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
        assert!(auth.login("ana", "wrong").is_err());
        assert!(auth.login("bob", "s3cret-pass").is_err());
        let (token, _) = auth.login("ana", "s3cret-pass").expect("login");
        assert_eq!(auth.check(Some(&format!("Bearer {token}"))), Ok("ana".to_owned()));
        let basic = base64::engine::general_purpose::STANDARD.encode("ana:s3cret-pass");
        assert_eq!(auth.check(Some(&format!("Basic {basic}"))), Ok("ana".to_owned()));
        assert_eq!(auth.check(None), Err(Refused::Missing));
        let other = Auth::new(&spec("another-long-random-secret-of-32-bytes-plus"), false).expect("auth");
        assert!(other.check(Some(&format!("Bearer {token}"))).is_err(), "a token signed with another secret");
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
}
