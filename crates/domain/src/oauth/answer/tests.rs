use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeZone;
use secrecy::ExposeSecret;
use serde_json::json;

use super::*;

const ACCESS: &str = "ya29.access-SECRET-1";
const REFRESH: &str = "1//refresh-SECRET-2";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The error of a call that must fail.
fn error_of<T>(result: Result<T, TokenError>) -> anyhow::Result<TokenError> {
    result
        .err()
        .ok_or_else(|| anyhow::anyhow!("the call succeeded"))
}

fn id_token(claims: Value) -> String {
    format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn body(value: Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[test]
fn a_code_answer_gives_every_token_the_expiry_scopes_and_email() -> anyhow::Result<()> {
    let answer = json!({
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_in": 3599,
        "token_type": "Bearer",
        "scope": "openid https://mail.google.com/  email",
        "id_token": id_token(json!({"sub": "1", "email": "jane@example.com"})),
    });
    let tokens = tokens(200, &body(answer), at())?;
    assert_eq!(tokens.access_token.expose_secret(), ACCESS);
    assert_eq!(
        tokens.refresh_token.as_ref().map(|t| t.expose_secret()),
        Some(REFRESH)
    );
    assert_eq!(tokens.expires_at, Some(at() + TimeDelta::seconds(3599)));
    assert_eq!(
        tokens.scopes,
        Some(vec![
            "openid".to_owned(),
            "https://mail.google.com/".to_owned(),
            "email".to_owned()
        ])
    );
    assert_eq!(tokens.email.as_deref(), Some("jane@example.com"));
    let debug = format!("{tokens:?}");
    assert!(
        !debug.contains(ACCESS) && !debug.contains(REFRESH),
        "{debug}"
    );
    Ok(())
}

#[test]
fn a_refresh_answer_without_rotation_scope_or_id_token() -> anyhow::Result<()> {
    let answer = json!({"access_token": ACCESS, "expires_in": "3600", "token_type": "bearer"});
    let tokens = tokens(200, &body(answer), at())?;
    assert!(tokens.refresh_token.is_none());
    assert_eq!(tokens.expires_at, Some(at() + TimeDelta::hours(1)));
    assert_eq!(tokens.scopes, None);
    assert_eq!(tokens.email, None);
    Ok(())
}

#[test]
fn no_expires_in_is_no_expiry() -> anyhow::Result<()> {
    let tokens = tokens(200, &body(json!({"access_token": ACCESS})), at())?;
    assert_eq!(tokens.expires_at, None);
    Ok(())
}

#[test]
fn invalid_grant_is_its_own_error_whatever_the_status() {
    for status in [400, 401, 200] {
        let answer = json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."});
        match tokens(status, &body(answer), at()) {
            Err(TokenError::InvalidGrant { description }) => {
                assert_eq!(description, "Token has been expired or revoked.")
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[test]
fn other_oauth_errors_and_bare_statuses_are_provider_errors() {
    match tokens(401, &body(json!({"error": "invalid_client"})), at()) {
        Err(TokenError::Provider {
            status: 401,
            error,
            description,
        }) => assert_eq!(
            (error.as_str(), description.as_str()),
            ("invalid_client", "")
        ),
        other => panic!("{other:?}"),
    }
    match tokens(502, b"<html>Bad gateway</html>", at()) {
        Err(error @ TokenError::Provider { status: 502, .. }) => assert_eq!(
            error.to_string(),
            "the authorization server answered HTTP 502 without an OAuth error"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn provider_descriptions_are_bounded_and_single_line() {
    let long = format!("line\nbreak{}", "x".repeat(1000));
    match tokens(
        400,
        &body(json!({"error": "invalid_request", "error_description": long})),
        at(),
    ) {
        Err(TokenError::Provider { description, .. }) => {
            assert!(description.starts_with("linebreak"), "{description}");
            assert_eq!(description.chars().count(), MAX_DESCRIPTION_CHARS);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn success_statuses_that_are_not_token_answers_are_malformed() {
    let cases: [(&[u8], &str); 7] = [
        (b"<html></html>", "not a JSON object"),
        (b"[]", "not a JSON object"),
        (br#"{"token_type":"Bearer"}"#, "no access_token"),
        (br#"{"access_token":""}"#, "no access_token"),
        (br#"{"access_token":7}"#, "access_token is not a string"),
        (
            br#"{"access_token":"a","token_type":"mac"}"#,
            "token_type is not Bearer",
        ),
        (
            br#"{"access_token":"a","expires_in":-5}"#,
            "expires_in is not a number of seconds",
        ),
    ];
    for (answer, reason) in cases {
        match tokens(200, answer, at()) {
            Err(TokenError::Malformed(got)) => assert_eq!(got, reason),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(answer)),
        }
    }
    let unreadable = json!({"access_token": "a", "id_token": "not-a-jwt"});
    assert!(matches!(
        tokens(200, &body(unreadable), at()),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn revocation_succeeds_on_success_and_on_an_already_invalid_token() {
    assert!(revoked(200, b"").is_ok());
    assert!(revoked(400, &body(json!({"error": "invalid_token"}))).is_ok());
    assert!(matches!(
        revoked(401, &body(json!({"error": "invalid_client"}))),
        Err(TokenError::Provider { status: 401, .. })
    ));
    assert!(matches!(
        revoked(503, b"down"),
        Err(TokenError::Provider { status: 503, .. })
    ));
}

/// Every variant, made from answers that carry secrets where a careless parser would copy
/// them into its error (serde's invalid-type errors quote the value, a bad body could be
/// echoed), shows none of them in `Display` or `Debug`.
#[test]
fn no_error_shows_a_secret() -> anyhow::Result<()> {
    let secrets = [
        ACCESS,
        REFRESH,
        "CODE-SECRET-3",
        "VERIFIER-SECRET-4",
        "CLIENT-SECRET-5",
    ];
    let mut errors = vec![
        tokens(400, &body(json!({"error": "invalid_grant"})), at()),
        tokens(401, &body(json!({"error": "invalid_client"})), at()),
        tokens(
            500,
            format!("{ACCESS} {REFRESH} CLIENT-SECRET-5").as_bytes(),
            at(),
        ),
        tokens(
            200,
            format!("{{\"access_token\":\"{ACCESS}\"").as_bytes(),
            at(),
        ),
        tokens(
            200,
            &body(json!({"access_token": ACCESS, "token_type": REFRESH})),
            at(),
        ),
        tokens(
            200,
            &body(json!({"access_token": ACCESS, "expires_in": REFRESH})),
            at(),
        ),
        tokens(
            200,
            &body(json!({"access_token": ACCESS, "refresh_token": [REFRESH]})),
            at(),
        ),
        tokens(
            200,
            &body(json!({"access_token": ACCESS, "id_token": format!("{REFRESH}.x")})),
            at(),
        ),
        tokens(
            200,
            &body(json!({"access_token": ACCESS, "id_token": format!("a.{REFRESH}.b")})),
            at(),
        ),
    ]
    .into_iter()
    .map(error_of)
    .collect::<anyhow::Result<Vec<_>>>()?;
    errors.push(error_of(revoked(
        400,
        &body(json!({"error": "unsupported_token_type"})),
    ))?);
    errors.push(TokenError::Refused);
    errors.push(TokenError::Transport(
        "error sending request: connection refused".into(),
    ));
    match crate::oauth::endpoint::parse("token_url", "CLIENT-SECRET-5") {
        Ok(url) => anyhow::bail!("{url} parsed"),
        Err(invalid) => errors.push(invalid.into()),
    }
    let variants = [
        "InvalidGrant",
        "Provider",
        "Refused",
        "Transport",
        "Malformed",
        "InvalidEndpoint",
    ];
    for variant in variants {
        assert!(
            errors.iter().any(|e| format!("{e:?}").starts_with(variant)),
            "no {variant} checked"
        );
    }
    for error in &errors {
        let shown = format!("{error} / {error:?}");
        for secret in secrets {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
    Ok(())
}
