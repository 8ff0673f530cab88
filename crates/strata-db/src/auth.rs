//! Passwords on both sides: SCRAM-SHA-256 (RFC 5802, RFC 7677, as PostgreSQL speaks it) as the
//! server clients log in to and as the client of the real servers, and md5.
//!
//! A user stored as a SCRAM secret has no password Strata could send on: the client key its
//! client's proof reveals (proof XOR client signature) is kept, and Strata logs in to the
//! servers with it, as PgBouncer does. Servers must then hold the same secret (same salt and
//! iterations), which is what copying it from `pg_authid` gives.

use md5::{Digest, Md5};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use strata_config::Secret;

use std::num::NonZeroU32;

/// Iterations for the SCRAM secret made from a plain password (PostgreSQL's default).
const ITERATIONS: u32 = 4096;

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client's SCRAM messages are not SCRAM.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof or password does not match.
    #[error("password authentication failed")]
    Wrong,
    /// Channel binding was asked for; Strata terminates no TLS to bind to.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The server's SCRAM signature does not match: it is not who it says.
    #[error("the server's SCRAM signature does not match")]
    ServerSignature,
    /// The server asks for a method Strata cannot answer with what it knows of the password.
    #[error("{0}")]
    Unsupported(String),
}

/// Random bytes from the system (salts, nonces, cancel keys, the unknown user's password).
///
/// The system's generator (`getrandom`) does not fail on the kernels Strata runs on; if it
/// ever does, the process stops rather than go on with bytes an attacker could predict (a
/// nonce or cancel key of zeros), as BoringSSL does.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if SystemRandom::new().fill(&mut out).is_err() {
        tracing::error!("the system's random number generator failed: stopping");
        std::process::abort();
    }
    out
}

pub use strata_config::base64_encode as b64;

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn salted(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

/// The keys of a SCRAM secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// SHA-256 of the client key.
    pub stored_key: [u8; 32],
    /// The server key.
    pub server_key: [u8; 32],
}

impl ScramKeys {
    /// Keys no password matches, salted for `user` as if it existed: the same salt for the
    /// same name every time (from `nonce`, the process's own), a different one for each name,
    /// as PostgreSQL's `scram_mock_salt` does, so a SCRAM exchange does not tell whether a
    /// user exists.
    pub fn mock(user: &str, nonce: &[u8; 32]) -> ScramKeys {
        ScramKeys {
            iterations: ITERATIONS,
            salt: name_salt(user, nonce),
            stored_key: random::<32>(),
            server_key: random::<32>(),
        }
    }

    /// The keys of `user`'s `password`, salted for the name as [`ScramKeys::mock`] salts
    /// (so a user with a password in clear shows the same salt at every login, across reloads
    /// and restarts, as a stored secret does).
    pub fn for_password(user: &str, password: &str, nonce: &[u8; 32]) -> ScramKeys {
        Self::from_password(password, &name_salt(user, nonce), ITERATIONS).0
    }

    /// The keys of `password` with `salt` and `iterations`, and its client key.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> (ScramKeys, [u8; 32]) {
        let salted = salted(password, salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let keys = ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        };
        (keys, client_key)
    }

    /// The keys of `password` with a fresh salt and PostgreSQL's default iterations.
    pub fn salted_anew(password: &str) -> ScramKeys {
        Self::from_password(password, &random::<16>(), ITERATIONS).0
    }

    /// The keys of a stored SCRAM secret's parts.
    fn stored(
        iterations: u32,
        salt: &[u8],
        stored_key: [u8; 32],
        server_key: [u8; 32],
    ) -> ScramKeys {
        ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// The keys a client is checked against: the stored secret, or one made once from the
    /// password (with a fresh salt); none for an md5 hash.
    pub fn for_secret(secret: &Secret) -> Option<ScramKeys> {
        match secret {
            Secret::Plain(p) => Some(Self::salted_anew(p)),
            Secret::Scram {
                iterations,
                salt,
                stored_key,
                server_key,
            } => Some(Self::stored(*iterations, salt, *stored_key, *server_key)),
            Secret::Md5(_) => None,
        }
    }

    /// These keys as a stored secret.
    pub fn as_secret(&self) -> Secret {
        Secret::Scram {
            iterations: self.iterations,
            salt: self.salt.clone(),
            stored_key: self.stored_key,
            server_key: self.server_key,
        }
    }
}

/// A 16-byte salt for `user`, the same for the same name and `nonce`.
fn name_salt(user: &str, nonce: &[u8; 32]) -> Vec<u8> {
    hmac_sha256(nonce, user.as_bytes())[..16].to_vec()
}

/// A nonce made from secret material only the listener has (`material`, e.g. its users'
/// secrets), the same while that is the same: across restarts, as PostgreSQL keeps its mock
/// nonce in pg_control.
pub fn nonce_of(material: &[u8]) -> [u8; 32] {
    hmac_sha256(b"strata scram mock nonce", material)
}

fn attribute(part: &str, name: char) -> Option<&str> {
    part.strip_prefix(name)?.strip_prefix('=')
}

/// Strata as the SCRAM server a client logs in to.
pub struct ScramServer {
    keys: ScramKeys,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2: String,
}

impl ScramServer {
    /// Answers the client-first message (from SASLInitialResponse) with the server-first one.
    pub fn start(keys: ScramKeys, client_first: &str) -> Result<(ScramServer, String), AuthError> {
        let (gs2, bare) = match client_first.split_once(',') {
            Some(("n", rest)) | Some(("y", rest)) => {
                let (authzid, bare) = rest
                    .split_once(',')
                    .ok_or(AuthError::Malformed("gs2 header"))?;
                if !authzid.is_empty() {
                    return Err(AuthError::Malformed("authzid"));
                }
                let flag = &client_first[..1];
                (format!("{flag},,"), bare)
            }
            Some((p, _)) if p.starts_with("p=") => return Err(AuthError::ChannelBinding),
            _ => return Err(AuthError::Malformed("gs2 header")),
        };
        let mut parts = bare.split(',');
        let _user = parts
            .next()
            .and_then(|p| attribute(p, 'n'))
            .ok_or(AuthError::Malformed("username"))?;
        let client_nonce = parts
            .next()
            .and_then(|p| attribute(p, 'r'))
            .ok_or(AuthError::Malformed("nonce"))?;
        if client_nonce.is_empty() || client_nonce.contains(',') {
            return Err(AuthError::Malformed("nonce"));
        }
        let nonce = format!("{client_nonce}{}", b64(&random::<18>()));
        let server_first = format!("r={nonce},s={},i={}", b64(&keys.salt), keys.iterations);
        Ok((
            ScramServer {
                keys,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                gs2,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; on success returns the server-final message and the
    /// client key the proof revealed.
    pub fn finish(&self, client_final: &str) -> Result<(String, [u8; 32]), AuthError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("proof"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|p| attribute(p, 'c'))
            .ok_or(AuthError::Malformed("channel binding"))?;
        if binding != b64(self.gs2.as_bytes()) {
            return Err(AuthError::ChannelBinding);
        }
        let nonce = parts
            .next()
            .and_then(|p| attribute(p, 'r'))
            .ok_or(AuthError::Malformed("nonce"))?;
        if nonce != self.nonce {
            return Err(AuthError::Wrong);
        }
        let proof = strata_config::base64_decode(proof).ok_or(AuthError::Malformed("proof"))?;
        let proof: [u8; 32] = proof.try_into().map_err(|_| AuthError::Wrong)?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac_sha256(&self.keys.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ signature[i];
        }
        if !same(&sha256(&client_key), &self.keys.stored_key) {
            return Err(AuthError::Wrong);
        }
        let server_signature = hmac_sha256(&self.keys.server_key, auth_message.as_bytes());
        Ok((format!("v={}", b64(&server_signature)), client_key))
    }
}

/// What Strata logs in to a server with, for one user.
#[derive(Clone)]
pub enum Credential {
    /// The password.
    Plain(String),
    /// The md5 hash (`md5...` as in pg_authid).
    Md5(String),
    /// A SCRAM secret and the client key a client revealed (once one has logged in).
    Scram(ScramKeys, Option<[u8; 32]>),
}

impl Credential {
    /// The credential of a configured secret.
    pub fn of(secret: &Secret) -> Credential {
        match secret {
            Secret::Plain(p) => Credential::Plain(p.clone()),
            Secret::Md5(h) => Credential::Md5(h.clone()),
            Secret::Scram {
                iterations,
                salt,
                stored_key,
                server_key,
            } => Credential::Scram(
                ScramKeys::stored(*iterations, salt, *stored_key, *server_key),
                None,
            ),
        }
    }
}

/// The md5 password message: `md5` + md5(md5(password + user) + salt), from the password or
/// from pg_authid's `md5` hash.
pub fn md5_response(
    credential: &Credential,
    user: &str,
    salt: [u8; 4],
) -> Result<String, AuthError> {
    let inner = match credential {
        Credential::Plain(p) => hex(&Md5::digest(format!("{p}{user}").as_bytes())),
        Credential::Md5(h) => h.trim_start_matches("md5").to_string(),
        Credential::Scram(..) => {
            return Err(AuthError::Unsupported(
                "the server asks for md5, and this user is stored as a SCRAM secret".into(),
            ))
        }
    };
    let mut h = Md5::new();
    h.update(inner.as_bytes());
    h.update(salt);
    Ok(format!("md5{}", hex(&h.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Strata as a SCRAM client of a server.
pub struct ScramClient {
    nonce: String,
    client_first_bare: String,
    expected_server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// The client-first message.
    pub fn start() -> (ScramClient, String) {
        let nonce = b64(&random::<18>());
        let bare = format!("n=,r={nonce}");
        (
            ScramClient {
                nonce,
                client_first_bare: bare.clone(),
                expected_server_signature: None,
            },
            format!("n,,{bare}"),
        )
    }

    /// Answers the server-first message with the client-final one.
    pub fn answer(
        &mut self,
        server_first: &str,
        credential: &Credential,
    ) -> Result<String, AuthError> {
        let mut parts = server_first.split(',');
        let nonce = parts
            .next()
            .and_then(|p| attribute(p, 'r'))
            .ok_or(AuthError::Malformed("server nonce"))?;
        let salt = parts
            .next()
            .and_then(|p| attribute(p, 's'))
            .ok_or(AuthError::Malformed("salt"))?;
        let iterations: u32 = parts
            .next()
            .and_then(|p| attribute(p, 'i'))
            .and_then(|i| i.parse().ok())
            .ok_or(AuthError::Malformed("iterations"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(AuthError::Malformed("server nonce"));
        }
        let salt = strata_config::base64_decode(salt).ok_or(AuthError::Malformed("salt"))?;
        let (keys, client_key) = match credential {
            Credential::Plain(p) => ScramKeys::from_password(p, &salt, iterations),
            Credential::Scram(keys, Some(client_key)) => {
                if keys.salt != salt || keys.iterations != iterations {
                    return Err(AuthError::Unsupported(
                        "the server's SCRAM secret for this user differs from the one in Strata's config (salt or iterations)".into(),
                    ));
                }
                (keys.clone(), *client_key)
            }
            Credential::Scram(_, None) => return Err(AuthError::Unsupported(
                "this user is stored as a SCRAM secret, and no client has logged in with it yet"
                    .into(),
            )),
            Credential::Md5(_) => {
                return Err(AuthError::Unsupported(
                    "the server asks for SCRAM, and this user is stored as an md5 hash".into(),
                ))
            }
        };
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&keys.stored_key, auth_message.as_bytes());
        let mut proof = [0u8; 32];
        for i in 0..32 {
            proof[i] = client_key[i] ^ signature[i];
        }
        self.expected_server_signature =
            Some(hmac_sha256(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", b64(&proof)))
    }

    /// Checks the server-final message.
    pub fn verify(&self, server_final: &str) -> Result<(), AuthError> {
        let v = attribute(server_final, 'v').ok_or(AuthError::ServerSignature)?;
        let v = strata_config::base64_decode(v).ok_or(AuthError::ServerSignature)?;
        match self.expected_server_signature {
            Some(expected) if v == expected => Ok(()),
            _ => Err(AuthError::ServerSignature),
        }
    }
}

/// Checks a client's md5 password message against what Strata knows.
pub fn md5_check(secret: &Secret, user: &str, salt: [u8; 4], answer: &str) -> bool {
    let credential = match secret {
        Secret::Plain(p) => Credential::Plain(p.clone()),
        Secret::Md5(h) => Credential::Md5(h.clone()),
        Secret::Scram { .. } => return false,
    };
    md5_response(&credential, user, salt)
        .is_ok_and(|expected| same(expected.as_bytes(), answer.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n).map(|i: u8| i.wrapping_mul(37)).collect();
            assert_eq!(strata_config::base64_decode(&b64(&data)).unwrap(), data);
        }
        assert_eq!(b64(b"n,,"), "biws");
    }

    #[test]
    fn scram_client_and_server_agree_and_the_client_key_logs_in_again() {
        let (keys, client_key) = ScramKeys::from_password("pencil", b"salt-salt", 4096);
        let (mut client, first) = ScramClient::start();
        let (server, server_first) = ScramServer::start(keys.clone(), &first).unwrap();
        let fin = client
            .answer(&server_first, &Credential::Plain("pencil".into()))
            .unwrap();
        let (server_final, revealed) = server.finish(&fin).unwrap();
        client.verify(&server_final).unwrap();
        assert_eq!(revealed, client_key);
        // the revealed key alone logs in to a server holding the same secret
        let (mut client, first) = ScramClient::start();
        let (server, server_first) = ScramServer::start(keys.clone(), &first).unwrap();
        let fin = client
            .answer(
                &server_first,
                &Credential::Scram(keys.clone(), Some(revealed)),
            )
            .unwrap();
        assert!(server.finish(&fin).is_ok());
        // a wrong password does not
        let (mut client, first) = ScramClient::start();
        let (server, server_first) = ScramServer::start(keys, &first).unwrap();
        let fin = client
            .answer(&server_first, &Credential::Plain("pen".into()))
            .unwrap();
        assert_eq!(server.finish(&fin).map(|_| ()), Err(AuthError::Wrong));
    }

    #[test]
    fn md5_as_postgres_computes_it() {
        // md5(md5("secret" + "app") + salt) by hand: inner = md5("secretapp")
        let salt = [1, 2, 3, 4];
        let plain = md5_response(&Credential::Plain("secret".into()), "app", salt).unwrap();
        let inner = format!("md5{}", hex(&Md5::digest(b"secretapp")));
        let hashed = md5_response(&Credential::Md5(inner), "app", salt).unwrap();
        assert_eq!(plain, hashed);
        assert!(md5_check(
            &Secret::Plain("secret".into()),
            "app",
            salt,
            &plain
        ));
    }
}
