//! The account's address from an OpenID Connect ID token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why an ID token's payload could not be read; never quotes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unreadable(pub(super) &'static str);

/// The account's address in `id_token`: its `email` claim unless the token says that
/// address is not verified (`email_verified: false`, which Google sets for an address the
/// account only claims), else its `preferred_username` when that is an address (Microsoft
/// work accounts often carry no `email`, their sign-in name is); `None` without either.
///
/// The signature is not checked: the token comes straight from the token endpoint over TLS
/// in answer to this client's own request, which OpenID Connect Core 1.0 3.1.3.7 point 6
/// allows to stand for its validation ("the TLS server validation MAY be used to validate
/// the issuer in place of checking the token signature").
pub(super) fn email(id_token: &str) -> Result<Option<String>, Unreadable> {
    let mut parts = id_token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Err(Unreadable("the ID token is not a signed JWT (three parts)")),
    };
    // JWTs are unpadded; a padded one is tolerated rather than refused.
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| Unreadable("the ID token's payload is not base64url"))?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| Unreadable("the ID token's payload is not JSON"))?;
    if !claims.is_object() {
        return Err(Unreadable("the ID token's payload is not a JSON object"));
    }
    let unverified = matches!(
        claims.get("email_verified"),
        Some(serde_json::Value::Bool(false))
    ) || claims.get("email_verified").and_then(|v| v.as_str()) == Some("false");
    let email = match claims.get("email") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(email)) => Some(email.clone()),
        Some(_) => return Err(Unreadable("the ID token's email claim is not a string")),
    };
    if unverified {
        return Ok(None);
    }
    Ok(email.or_else(|| {
        claims
            .get("preferred_username")
            .and_then(|v| v.as_str())
            .filter(|name| name.contains('@'))
            .map(str::to_owned)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_the_email_claim() {
        let token = jwt(r#"{"iss":"https://accounts.google.com","email":"jane@example.com"}"#);
        assert_eq!(email(&token), Ok(Some("jane@example.com".to_owned())));
    }

    #[test]
    fn no_email_claim_is_none() {
        assert_eq!(email(&jwt(r#"{"sub":"42"}"#)), Ok(None));
    }

    #[test]
    fn an_unverified_email_is_no_address() {
        let token = jwt(r#"{"email":"ceo@bank.example","email_verified":false}"#);
        assert_eq!(email(&token), Ok(None));
        let verified = jwt(r#"{"email":"jane@example.com","email_verified":true}"#);
        assert_eq!(email(&verified), Ok(Some("jane@example.com".to_owned())));
    }

    #[test]
    fn a_microsoft_sign_in_name_stands_in_for_a_missing_email() {
        let token = jwt(r#"{"preferred_username":"jane@contoso.com","tid":"t"}"#);
        assert_eq!(email(&token), Ok(Some("jane@contoso.com".to_owned())));
        let phone = jwt(r#"{"preferred_username":"+15551234567"}"#);
        assert_eq!(email(&phone), Ok(None));
    }

    #[test]
    fn unreadable_tokens_are_errors() {
        assert!(email("only.two").is_err());
        assert!(email("a.b.c.d").is_err());
        assert!(email("a.!!!.c").is_err());
        assert!(email(&jwt("not json")).is_err());
        assert!(email(&jwt("[1]")).is_err());
        assert!(email(&jwt(r#"{"email":7}"#)).is_err());
    }
}
