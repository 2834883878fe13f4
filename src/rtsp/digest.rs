//! HTTP Digest authentication for RTSP readers (RFC 2617 with MD5, the scheme every NVR and
//! player speaks: ffmpeg, GStreamer, VLC, Frigate, Blue Iris), pure.
//!
//! Nonces are stateless: the time they were issued and a keyed hash of it, so the server keeps
//! nothing per client (a thousand connections cost no memory here) and a nonce is good for
//! [`NONCE_LIFETIME`] only. A stranger's `Authorization` header is read with bounds: too long,
//! too many parameters, or anything malformed is a typed refusal, never a panic.

use md5::{Digest, Md5};
use ring::hmac;
use std::time::Duration;

/// How long a nonce is good for; a reader whose nonce has expired is challenged again (with
/// `stale=true`, so it retries with the same credentials).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// The longest `Authorization` header read.
const MAX_HEADER: usize = 2048;
/// The most parameters an `Authorization` header may carry.
const MAX_PARAMETERS: usize = 16;
/// The realm readers are told.
pub const REALM: &str = "campeer";

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials given")]
    Missing,
    #[error("the Authorization header is not Digest, or is malformed: {0}")]
    Malformed(&'static str),
    #[error("the nonce was not issued here")]
    UnknownNonce,
    #[error("the nonce has expired")]
    StaleNonce,
    #[error("wrong user name or password")]
    WrongCredentials,
}

/// The user name and password readers must give.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

/// Issues nonces and checks the answers to them.
pub struct DigestAuth {
    credentials: Credentials,
    key: hmac::Key,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

fn md5_hex(parts: &[&str]) -> String {
    let mut hash = Md5::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash.update(b":");
        }
        hash.update(part.as_bytes());
    }
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Equal, taking as long whatever the first difference.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut difference = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        difference |= x ^ b.get(i).copied().unwrap_or(0);
    }
    difference == 0
}

impl DigestAuth {
    /// `secret`: the key of the nonces' hash, random per process.
    pub fn new(credentials: Credentials, secret: &[u8]) -> Self {
        Self {
            credentials,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A nonce issued `now` (seconds on the server's clock, any epoch).
    pub fn nonce(&self, now_secs: u64) -> String {
        let issued = format!("{now_secs:016x}");
        let tag = hmac::sign(&self.key, issued.as_bytes());
        let tag: String = tag
            .as_ref()
            .iter()
            .take(16)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("{issued}{tag}")
    }

    /// The `WWW-Authenticate` value of a challenge issued at `now_secs`.
    pub fn challenge(&self, now_secs: u64, stale: bool) -> String {
        let stale = if stale { ", stale=TRUE" } else { "" };
        format!(
            "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5{stale}",
            self.nonce(now_secs)
        )
    }

    /// Whether `authorization` (the header's value) answers a nonce of ours, fresh at
    /// `now_secs`, with the right credentials for `method`.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        method: &str,
        now_secs: u64,
    ) -> Result<(), AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let answer = Answer::parse(header)?;
        let nonce = answer
            .get("nonce")
            .ok_or(AuthError::Malformed("no nonce"))?;
        self.check_nonce(nonce, now_secs)?;
        let username = answer
            .get("username")
            .ok_or(AuthError::Malformed("no username"))?;
        let uri = answer.get("uri").ok_or(AuthError::Malformed("no uri"))?;
        let response = answer
            .get("response")
            .ok_or(AuthError::Malformed("no response"))?;
        if let Some(algorithm) = answer.get("algorithm")
            && !algorithm.eq_ignore_ascii_case("MD5")
        {
            return Err(AuthError::Malformed("only MD5 is offered"));
        }
        let realm = answer.get("realm").unwrap_or(REALM);
        let ha1 = md5_hex(&[username, realm, &self.credentials.password]);
        let ha2 = md5_hex(&[method, uri]);
        let expected = match answer.get("qop") {
            None => md5_hex(&[&ha1, nonce, &ha2]),
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let nc = answer
                    .get("nc")
                    .ok_or(AuthError::Malformed("qop without nc"))?;
                let cnonce = answer
                    .get("cnonce")
                    .ok_or(AuthError::Malformed("qop without cnonce"))?;
                md5_hex(&[&ha1, nonce, nc, cnonce, qop, &ha2])
            }
            Some(_) => return Err(AuthError::Malformed("only qop=auth is offered")),
        };
        let right_user = same(username, &self.credentials.username);
        let right_realm = realm == REALM;
        let right_response = same(&response.to_ascii_lowercase(), &expected);
        if right_user && right_realm && right_response {
            Ok(())
        } else {
            Err(AuthError::WrongCredentials)
        }
    }

    fn check_nonce(&self, nonce: &str, now_secs: u64) -> Result<(), AuthError> {
        let issued = nonce.get(..16).ok_or(AuthError::UnknownNonce)?;
        let issued_secs = u64::from_str_radix(issued, 16).map_err(|_| AuthError::UnknownNonce)?;
        if !same(nonce, &self.nonce(issued_secs)) {
            return Err(AuthError::UnknownNonce);
        }
        if now_secs.saturating_sub(issued_secs) > NONCE_LIFETIME.as_secs() {
            return Err(AuthError::StaleNonce);
        }
        Ok(())
    }
}

/// The parameters of a `Digest` `Authorization` header.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answer<'a> {
    parameters: Vec<(&'a str, &'a str)>,
}

impl<'a> Answer<'a> {
    fn parse(header: &'a str) -> Result<Self, AuthError> {
        if header.len() > MAX_HEADER {
            return Err(AuthError::Malformed("too long"));
        }
        let header = header.trim();
        let rest = match header.split_once(char::is_whitespace) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Digest") => rest,
            _ => return Err(AuthError::Malformed("not Digest")),
        };
        let mut answer = Answer::default();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            if answer.parameters.len() == MAX_PARAMETERS {
                return Err(AuthError::Malformed("too many parameters"));
            }
            let (name, after) = rest
                .split_once('=')
                .ok_or(AuthError::Malformed("a parameter without a value"))?;
            let name = name.trim();
            let after = after.trim_start();
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                // Quoted strings here carry no escapes worth keeping (hex, URIs, names).
                let end = quoted
                    .find('"')
                    .ok_or(AuthError::Malformed("an unterminated quoted value"))?;
                (
                    quoted.get(..end).unwrap_or(""),
                    quoted.get(end + 1..).unwrap_or(""),
                )
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (
                    after.get(..end).unwrap_or("").trim(),
                    after.get(end..).unwrap_or(""),
                )
            };
            if name.is_empty() {
                return Err(AuthError::Malformed("an empty parameter name"));
            }
            answer.parameters.push((name, value));
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Ok(answer)
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> DigestAuth {
        DigestAuth::new(
            Credentials {
                username: "nvr".into(),
                password: "s3cret".into(),
            },
            b"test key",
        )
    }

    /// What a reader sends, computed as RFC 2617 says.
    fn answer(nonce: &str, user: &str, password: &str, uri: &str) -> String {
        let ha1 = md5_hex(&[user, REALM, password]);
        let ha2 = md5_hex(&["DESCRIBE", uri]);
        let response = md5_hex(&[&ha1, nonce, &ha2]);
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\""
        )
    }

    #[test]
    fn md5_is_md5() {
        // RFC 1321's test suite.
        assert_eq!(md5_hex(&["abc"]), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn the_right_answer_to_a_fresh_nonce_is_let_in() {
        let auth = auth();
        let nonce = auth.nonce(1_000);
        let uri = "rtsp://127.0.0.1:8554/cam";
        let good = answer(&nonce, "nvr", "s3cret", uri);
        assert_eq!(auth.verify(Some(&good), "DESCRIBE", 1_010), Ok(()));
        assert_eq!(
            auth.verify(
                Some(&answer(&nonce, "nvr", "wrong", uri)),
                "DESCRIBE",
                1_010
            ),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            auth.verify(
                Some(&answer(&nonce, "other", "s3cret", uri)),
                "DESCRIBE",
                1_010
            ),
            Err(AuthError::WrongCredentials)
        );
        // The same answer for another method is wrong (HA2 covers the method).
        assert_eq!(
            auth.verify(Some(&good), "PLAY", 1_010),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            auth.verify(
                Some(&good),
                "DESCRIBE",
                1_000 + NONCE_LIFETIME.as_secs() + 1
            ),
            Err(AuthError::StaleNonce)
        );
        assert_eq!(
            auth.verify(None, "DESCRIBE", 1_010),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn a_nonce_not_issued_here_is_refused() {
        let auth = auth();
        let forged = format!("{:016x}{}", 1_000, "0".repeat(32));
        let uri = "rtsp://h/cam";
        assert_eq!(
            auth.verify(
                Some(&answer(&forged, "nvr", "s3cret", uri)),
                "DESCRIBE",
                1_010
            ),
            Err(AuthError::UnknownNonce)
        );
        let other = DigestAuth::new(
            Credentials {
                username: "nvr".into(),
                password: "s3cret".into(),
            },
            b"another key",
        );
        let theirs = other.nonce(1_000);
        assert_eq!(
            auth.verify(
                Some(&answer(&theirs, "nvr", "s3cret", uri)),
                "DESCRIBE",
                1_010
            ),
            Err(AuthError::UnknownNonce)
        );
    }

    #[test]
    fn qop_auth_answers_are_checked_too() {
        let auth = auth();
        let nonce = auth.nonce(50);
        let uri = "rtsp://h/cam";
        let ha1 = md5_hex(&["nvr", REALM, "s3cret"]);
        let ha2 = md5_hex(&["DESCRIBE", uri]);
        let response = md5_hex(&[&ha1, &nonce, "00000001", "abcdef", "auth", &ha2]);
        let header = format!(
            "Digest username=\"nvr\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             qop=auth, nc=00000001, cnonce=\"abcdef\", response=\"{response}\", algorithm=MD5"
        );
        assert_eq!(auth.verify(Some(&header), "DESCRIBE", 60), Ok(()));
    }

    #[test]
    fn malformed_headers_get_typed_refusals() {
        let auth = auth();
        let long = format!("Digest username=\"{}\"", "x".repeat(MAX_HEADER));
        let many = format!("Digest {}", "a=b, ".repeat(MAX_PARAMETERS + 1));
        for header in [
            "Basic bnZyOnMzY3JldA==",
            "Digest",
            "Digest username",
            "Digest username=\"unterminated",
            "Digest =x",
            long.as_str(),
            many.as_str(),
            "Digest nonce=\"short\"",
            "Digest nonce=\"é\u{0}日本\"",
        ] {
            assert!(
                auth.verify(Some(header), "DESCRIBE", 0).is_err(),
                "{header:?} was let in"
            );
        }
    }
}
