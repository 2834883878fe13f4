//! Bearer tokens (RFC 6750), which WHEP players and metrics scrapers send alike.

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
