//! Authentication, as pure functions plus one small store: the password check, token
//! generation and hashing, constant-time comparison, expiry, and how a token travels (cookie,
//! `Authorization: Bearer`, `?token=`) and how a login body is read.
//!
//! The server never keeps a password or a token in the clear. It keeps the SHA-256 of the
//! password and of each token it issued, with the token's expiry, and compares digests in
//! constant time, so neither a memory dump of the token list nor the time a comparison takes
//! gives a usable token away.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::http::Request;

/// Name of the cookie that carries the token for the page.
pub const COOKIE_NAME: &str = "earshot_token";
/// Random bytes per token: 256 bits, far beyond guessing.
pub const TOKEN_BYTES: usize = 32;
/// Most tokens alive at once; a login beyond that ends the session that expires first, so a
/// client that logs in in a loop cannot grow the store without bound.
pub const MAX_TOKENS: usize = 1024;
/// Most candidate tokens looked at per request, however many cookies and headers it carries.
const MAX_PRESENTED: usize = 8;

/// A password or token: its `Debug` never shows the value, so it cannot leak into a log line.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub type Digest32 = [u8; 32];

pub fn sha256(data: &[u8]) -> Digest32 {
    Sha256::digest(data).into()
}

/// Compares two digests in time that does not depend on where they differ.
pub fn constant_time_eq(a: &Digest32, b: &Digest32) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A new token: [`TOKEN_BYTES`] from the operating system's generator, URL-safe base64 without
/// padding (43 characters), so it fits a cookie, a header and a query string unescaped.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(data_encoding::BASE64URL_NOPAD.encode(&bytes))
}

/// Whether `text` could be a token at all; anything else is refused without hashing it.
pub fn looks_like_token(text: &str) -> bool {
    (16..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The password, and the tokens issued for it.
pub struct Auth {
    password: Digest32,
    tokens: TokenStore,
}

impl Auth {
    pub fn new(password: &Secret, ttl: Duration) -> Auth {
        Auth {
            password: sha256(password.expose().as_bytes()),
            tokens: TokenStore::new(ttl),
        }
    }

    /// Hashing first makes the comparison constant-time whatever the lengths.
    pub fn password_matches(&self, given: &str) -> bool {
        constant_time_eq(&self.password, &sha256(given.as_bytes()))
    }

    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }
}

struct StoredToken {
    digest: Digest32,
    expires: Instant,
}

/// The SHA-256 and expiry of every live token; expired tokens are forgotten.
pub struct TokenStore {
    ttl: Duration,
    tokens: Mutex<Vec<StoredToken>>,
}

impl TokenStore {
    pub fn new(ttl: Duration) -> TokenStore {
        TokenStore {
            ttl,
            tokens: Mutex::new(Vec::new()),
        }
    }

    /// Issues a token valid for the store's TTL from `now`.
    pub fn issue(&self, now: Instant) -> Result<Secret, getrandom::Error> {
        let token = new_token()?;
        let mut tokens = self.lock();
        tokens.retain(|t| t.expires > now);
        if tokens.len() >= MAX_TOKENS {
            if let Some(first) = (0..tokens.len()).min_by_key(|&i| tokens[i].expires) {
                tokens.swap_remove(first);
            }
        }
        tokens.push(StoredToken {
            digest: sha256(token.as_bytes()),
            expires: now + self.ttl,
        });
        Ok(Secret(token))
    }

    /// Whether `token` was issued here, is not revoked and has not expired at `now`.
    ///
    /// Every stored digest is compared, in constant time, so the answer takes as long for a
    /// near miss as for a match.
    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        if !looks_like_token(token) {
            return false;
        }
        let digest = sha256(token.as_bytes());
        self.lock().iter().fold(false, |found, t| {
            found | (constant_time_eq(&t.digest, &digest) & (t.expires > now))
        })
    }

    /// Forgets `token`; returns whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        let digest = sha256(token.as_bytes());
        let mut tokens = self.lock();
        let before = tokens.len();
        tokens.retain(|t| !constant_time_eq(&t.digest, &digest));
        tokens.len() != before
    }

    /// Live tokens at `now`, after forgetting the expired ones.
    pub fn live(&self, now: Instant) -> usize {
        let mut tokens = self.lock();
        tokens.retain(|t| t.expires > now);
        tokens.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StoredToken>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every token a request presents, in order: `Authorization: Bearer`, the cookie, `?token=`.
pub fn presented_tokens(request: &Request) -> Vec<String> {
    let bearer = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Authorization"))
        .filter_map(|(_, v)| bearer_token(v))
        .map(str::to_string);
    let cookies = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Cookie"))
        .flat_map(|(_, v)| cookie_values(v, COOKIE_NAME))
        .map(str::to_string);
    let query = query_values(&request.query, "token");
    bearer
        .chain(cookies)
        .chain(query)
        .take(MAX_PRESENTED)
        .collect()
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The values of cookie `name` in a `Cookie` header (`a=1; earshot_token=…`).
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (n, v) = pair.split_once('=')?;
        (n.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The decoded values of `name` in a query or form body (`a=1&token=…`).
pub fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = String> + 'a {
    query.split('&').filter_map(move |pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(n)? == name)
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// Decodes `%XX` escapes and `+` (a space in forms); `None` when the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// The address used up its failed attempts; it may try again after this long.
    TooManyFailures(Duration),
    WrongPassword,
    /// The operating system's random generator failed (no token can be made).
    NoRandomness,
}

impl LoginRefused {
    pub fn reason(&self) -> String {
        match self {
            LoginRefused::TooManyFailures(wait) => format!(
                "too many failed logins from this address; retry in {} s",
                retry_after_secs(*wait)
            ),
            LoginRefused::WrongPassword => "wrong password".to_string(),
            LoginRefused::NoRandomness => "cannot make a token: no random numbers".to_string(),
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_nanos().div_ceil(1_000_000_000) as u64).max(1)
}

/// Why a login body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginBodyError {
    /// The body is neither JSON nor a form.
    UnsupportedType,
    /// The body has no usable `password` field.
    NoPassword,
}

/// The password from a `POST /api/login` body: JSON `{"password": "…"}` when the Content-Type
/// says JSON, otherwise a form (`password=…`), which is what `curl -d` and an HTML form send.
pub fn login_password(content_type: Option<&str>, body: &[u8]) -> Result<Secret, LoginBodyError> {
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let password = match media.as_str() {
        "application/json" => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("password")?.as_str().map(str::to_string)),
        "" | "application/x-www-form-urlencoded" | "text/plain" => std::str::from_utf8(body)
            .ok()
            .and_then(|text| query_values(text.trim_end(), "password").next()),
        _ => return Err(LoginBodyError::UnsupportedType),
    };
    password.map(Secret).ok_or(LoginBodyError::NoPassword)
}

/// The `Set-Cookie` value that hands the page its token: HttpOnly so scripts cannot read it,
/// SameSite=Strict so no other site's page can make the browser send it, `Secure` when the
/// page was reached over HTTPS (through a proxy).
pub fn token_cookie(token: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that makes the browser forget the token.
pub fn cleared_cookie(secure: bool) -> String {
    token_cookie("", Duration::ZERO, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(looks_like_token(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn the_password_is_checked_exactly() {
        let auth = Auth::new(&Secret::new("hunter2"), Duration::from_secs(60));
        assert!(auth.password_matches("hunter2"));
        assert!(!auth.password_matches("hunter"));
        assert!(!auth.password_matches("hunter22"));
        assert!(!auth.password_matches(""));
    }

    #[test]
    fn tokens_expire_and_can_be_revoked() {
        let store = TokenStore::new(Duration::from_secs(10));
        let now = Instant::now();
        let token = store.issue(now).unwrap();
        assert!(store.is_valid(token.expose(), now));
        assert!(store.is_valid(token.expose(), now + Duration::from_secs(9)));
        assert!(!store.is_valid(token.expose(), now + Duration::from_secs(10)));
        assert!(!store.is_valid("not a token", now));
        let other = store.issue(now).unwrap();
        assert!(store.revoke(other.expose()));
        assert!(!store.is_valid(other.expose(), now));
        assert!(!store.revoke(other.expose()));
        assert_eq!(store.live(now + Duration::from_secs(11)), 0);
    }

    #[test]
    fn the_store_is_bounded_by_dropping_the_session_that_ends_first() {
        let store = TokenStore::new(Duration::from_secs(10));
        let start = Instant::now();
        let first = store.issue(start).unwrap();
        for i in 1..=MAX_TOKENS {
            store
                .issue(start + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(store.live(start), MAX_TOKENS);
        assert!(!store.is_valid(first.expose(), start));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(50)), 50);
        assert_eq!(retry_after_secs(Duration::from_millis(50_001)), 51);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn tokens_are_found_in_bearer_cookie_and_query() {
        let request = |headers: &[(&str, &str)], query: &str| Request {
            method: "GET".into(),
            path: "/ws".into(),
            query: query.into(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        assert_eq!(
            presented_tokens(&request(&[("authorization", "Bearer abc")], "")),
            ["abc"]
        );
        assert_eq!(
            presented_tokens(&request(&[("Cookie", "x=1; earshot_token=def; y=2")], "")),
            ["def"]
        );
        assert_eq!(presented_tokens(&request(&[], "a=1&token=g%2Dh")), ["g-h"]);
        assert!(presented_tokens(&request(&[("Authorization", "Basic abc")], "")).is_empty());
    }

    #[test]
    fn login_bodies_are_json_or_forms() {
        let json = Some("application/json; charset=utf-8");
        assert_eq!(
            login_password(json, br#"{"password":"p w"}"#).unwrap(),
            Secret::new("p w")
        );
        assert_eq!(
            login_password(None, b"password=p+w%21").unwrap(),
            Secret::new("p w!")
        );
        assert_eq!(
            login_password(json, b"password=x"),
            Err(LoginBodyError::NoPassword)
        );
        assert_eq!(
            login_password(json, br#"{"password":5}"#),
            Err(LoginBodyError::NoPassword)
        );
        assert_eq!(
            login_password(Some("image/png"), b""),
            Err(LoginBodyError::UnsupportedType)
        );
    }

    #[test]
    fn percent_decoding_keeps_broken_escapes_and_refuses_non_utf8() {
        assert_eq!(percent_decode("a%zz%4").as_deref(), Some("a%zz%4"));
        assert_eq!(percent_decode("%41%").as_deref(), Some("A%"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let c = token_cookie("t", Duration::from_secs(60), true);
        assert_eq!(
            c,
            "earshot_token=t; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(cleared_cookie(false).contains("Max-Age=0"));
    }
}
