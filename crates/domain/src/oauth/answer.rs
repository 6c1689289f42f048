//! Reading the token and revocation endpoints' answers (RFC 6749 5.1 and 5.2, RFC 7009 2.2),
//! apart from the HTTP so every shape of answer can be unit-tested.

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::error::TokenError;
use super::id_token;

/// Provider texts kept in errors are cut here: they end up in logs.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// What a token endpoint gave.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: SecretString,
    /// `None` when the provider keeps the refresh token it issued before (Google on a
    /// refresh; Hydra and Microsoft rotate it).
    pub refresh_token: Option<SecretString>,
    /// When the access token lapses: the request's start plus `expires_in`, so slightly
    /// early rather than late. `None` when the provider did not say (RFC 6749 makes
    /// `expires_in` optional).
    pub expires_at: Option<DateTime<Utc>>,
    /// The granted scopes, `None` when the answer left them out (then as requested).
    pub scopes: Option<Vec<String>>,
    /// The account's verified address from the ID token (`id_token::email`), `None` without
    /// ID token or address (a refresh usually has none).
    pub email: Option<String>,
}

/// The tokens of a token endpoint answer with `status` and `body`; `requested_at` is when
/// the request was sent.
pub(super) fn tokens(
    status: u16,
    body: &[u8],
    requested_at: DateTime<Utc>,
) -> Result<Tokens, TokenError> {
    let answer = object(status, body)?;
    let text = |name: &str| match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) if value.is_empty() => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.as_str())),
        Some(_) => Err(TokenError::Malformed(not_a_string(name))),
    };
    let access_token = text("access_token")?
        .ok_or(TokenError::Malformed("no access_token"))?
        .to_owned();
    if let Some(token_type) = text("token_type")?
        && !token_type.eq_ignore_ascii_case("bearer")
    {
        return Err(TokenError::Malformed("token_type is not Bearer"));
    }
    let expires_at = match expires_in(answer.get("expires_in"))? {
        Some(seconds) => Some(
            TimeDelta::try_seconds(seconds)
                .and_then(|lifetime| requested_at.checked_add_signed(lifetime))
                .ok_or(TokenError::Malformed("expires_in is out of range"))?,
        ),
        None => None,
    };
    let email = match text("id_token")? {
        Some(id_token) => {
            id_token::email(id_token).map_err(|unreadable| TokenError::Malformed(unreadable.0))?
        }
        None => None,
    };
    Ok(Tokens {
        access_token: access_token.into(),
        refresh_token: text("refresh_token")?.map(|token| token.to_owned().into()),
        expires_at,
        scopes: text("scope")?.map(|scope| scope.split_whitespace().map(str::to_owned).collect()),
        email,
    })
}

/// `Ok` when a revocation endpoint's answer says the token is no longer usable: a success,
/// or `invalid_token`, which RFC 7009 2.2 says a server should not even send for an unknown
/// token but Google answers for one already revoked or expired.
pub(super) fn revoked(status: u16, body: &[u8]) -> Result<(), TokenError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    match object(status, body) {
        Err(TokenError::Provider { error, .. }) if error == "invalid_token" => Ok(()),
        Err(error) => Err(error),
        Ok(_) => Err(TokenError::Provider {
            status,
            error: String::new(),
            description: String::new(),
        }),
    }
}

/// The answer's JSON object when it is a success, else its error.
fn object(status: u16, body: &[u8]) -> Result<Map<String, Value>, TokenError> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let success = (200..300).contains(&status);
    match parsed {
        // Some servers answer an error with 200; an `error` member makes it one anyway.
        Some(Value::Object(answer)) if !answer.contains_key("error") && success => Ok(answer),
        Some(Value::Object(answer)) if answer.contains_key("error") => {
            Err(oauth_error(status, &answer))
        }
        _ if success => Err(TokenError::Malformed("not a JSON object")),
        _ => Err(TokenError::Provider {
            status,
            error: String::new(),
            description: String::new(),
        }),
    }
}

fn oauth_error(status: u16, answer: &Map<String, Value>) -> TokenError {
    let field = |name: &str| {
        answer
            .get(name)
            .and_then(Value::as_str)
            .map(bounded)
            .unwrap_or_default()
    };
    let error = field("error");
    let description = field("error_description");
    if error == "invalid_grant" {
        TokenError::InvalidGrant { description }
    } else {
        TokenError::Provider {
            status,
            error,
            description,
        }
    }
}

/// `expires_in` as seconds: a JSON number, or a string of digits as some Microsoft
/// endpoints send.
fn expires_in(value: Option<&Value>) -> Result<Option<i64>, TokenError> {
    let invalid = TokenError::Malformed("expires_in is not a number of seconds");
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(seconds) if seconds >= 0 => Ok(Some(seconds)),
            _ => Err(invalid),
        },
        Some(Value::String(text)) => match text.trim().parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Ok(Some(seconds)),
            _ => Err(invalid),
        },
        Some(_) => Err(invalid),
    }
}

/// A provider's text, without control characters and cut to [`MAX_DESCRIPTION_CHARS`].
fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION_CHARS)
        .collect()
}

fn not_a_string(name: &str) -> &'static str {
    match name {
        "access_token" => "access_token is not a string",
        "refresh_token" => "refresh_token is not a string",
        "token_type" => "token_type is not a string",
        "id_token" => "id_token is not a string",
        "scope" => "scope is not a string",
        _ => "a member is not a string",
    }
}

#[cfg(test)]
mod tests;
