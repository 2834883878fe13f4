//! Bearer tokens (RFC 6750), which WHEP players, metrics scrapers and the page's snapshot and
//! recordings requests send alike.

use super::response::plain;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Request, Response, StatusCode};

/// The `401` (with `WWW-Authenticate: Bearer`) to answer `request` with when it lacks
/// `token`; `None` lets it through (it carries the token, or none is required).
pub fn refusal<B>(request: &Request<B>, token: Option<&str>) -> Option<Response<Full<Bytes>>> {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorized(given, token) {
        return None;
    }
    let mut response = plain(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
    response
        .headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    Some(response)
}

/// Whether `authorization` (the header's value) carries `token`, when one is required. The
/// comparison takes as long whatever the token's first wrong byte, so timing tells nothing.
pub fn authorized(authorization: Option<&str>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    let mut difference = u8::from(given.len() != token.len());
    for (i, expected) in token.iter().enumerate() {
        difference |= given.get(i).copied().unwrap_or(0) ^ expected;
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_must_match_exactly() {
        assert!(authorized(None, None));
        assert!(authorized(Some("Bearer x"), None));
        assert!(authorized(Some("Bearer s3cret"), Some("s3cret")));
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3crets"),
            Some("s3cret"),
        ] {
            assert!(!authorized(wrong, Some("s3cret")), "{wrong:?}");
        }
    }
}
