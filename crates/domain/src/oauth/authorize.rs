//! The authorization URL a user is sent to (RFC 6749 4.1.1 with PKCE, RFC 7636 4.3).

use reqwest::Url;

use super::endpoint::{self, InvalidEndpoint};
use super::pkce::{self, Pkce};
use crate::config::OAuthProviderConfig;

/// The per-request values of an authorization URL.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationRequest<'a> {
    /// `oauth.redirect_url`, registered as the client's redirect URI at the provider.
    pub redirect_url: &'a str,
    /// From [`pkce::random_state`]; the callback must echo it.
    pub state: &'a str,
    pub pkce: &'a Pkce,
    /// The address the user means to connect, pre-filled on the provider's sign-in page.
    pub login_hint: Option<&'a str>,
}

/// `provider`'s authorization endpoint with the request's parameters, then the provider's
/// `authorize_params`. A provider parameter named like one already set is left out: those
/// carry the request's security and configuration validation refuses them anyway.
pub fn authorization_url(
    provider: &OAuthProviderConfig,
    request: &AuthorizationRequest<'_>,
) -> Result<Url, InvalidEndpoint> {
    let mut url = endpoint::parse("authorize_url", &provider.authorize_url())?;
    let scope = provider.scopes.join(" ");
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", provider.client_id()),
        ("redirect_uri", request.redirect_url),
        ("scope", scope.as_str()),
        ("state", request.state),
        ("code_challenge", request.pkce.challenge()),
        ("code_challenge_method", pkce::METHOD),
    ];
    if let Some(hint) = request.login_hint {
        params.push(("login_hint", hint));
    }
    for (name, value) in provider.authorize_params() {
        if !params.iter().any(|(set, _)| *set == name) {
            params.push((name, value));
        }
    }
    url.query_pairs_mut().extend_pairs(params);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::SecretString;

    use super::*;
    use crate::mail::Security;

    fn provider(authorize_url: &str, params: &[(&str, &str)]) -> OAuthProviderConfig {
        OAuthProviderConfig {
            client_id: " client id&1 ".into(),
            client_secret: SecretString::from("s3cret"),
            tenant: "common".into(),
            authorize_url: authorize_url.into(),
            token_url: "https://login.example.com/{tenant}/token".into(),
            revoke_url: String::new(),
            scopes: vec![
                "https://mail.google.com/".into(),
                "openid".into(),
                "email".into(),
            ],
            authorize_params: params
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
            smtp_host: "smtp.example.com".into(),
            smtp_port: 465,
            smtp_security: Security::Tls,
            imap_host: "imap.example.com".into(),
            imap_port: 993,
            imap_security: Security::Tls,
        }
    }

    fn pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn carries_every_parameter_encoded_then_the_providers_own() -> anyhow::Result<()> {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        let provider = provider(
            "https://login.example.com/{tenant}/authorize",
            &[
                ("access_type", "offline"),
                ("prompt", "consent"),
                ("dropped", ""),
            ],
        );
        let url = authorization_url(
            &provider,
            &AuthorizationRequest {
                redirect_url: "https://seq.example.com/api/v1/oauth/callback?x=1",
                state: "st+ate/=",
                pkce: &pkce,
                login_hint: Some("jane+sales@example.com"),
            },
        )?;
        assert_eq!(
            url.as_str().split('?').next(),
            Some("https://login.example.com/common/authorize")
        );
        assert_eq!(
            pairs(&url),
            owned(&[
                ("response_type", "code"),
                ("client_id", "client id&1"),
                (
                    "redirect_uri",
                    "https://seq.example.com/api/v1/oauth/callback?x=1"
                ),
                ("scope", "https://mail.google.com/ openid email"),
                ("state", "st+ate/="),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
                ),
                ("code_challenge_method", "S256"),
                ("login_hint", "jane+sales@example.com"),
                ("access_type", "offline"),
                ("prompt", "consent"),
            ])
        );
        // Reserved characters are percent-encoded, not left to split the query.
        let query = url.query().unwrap_or_default();
        assert!(query.contains("client_id=client+id%261"), "{query}");
        assert!(query.contains("state=st%2Bate%2F%3D"), "{query}");
        assert!(
            query.contains("login_hint=jane%2Bsales%40example.com"),
            "{query}"
        );
        assert!(
            !query.contains("dBjftJeZ4CVP"),
            "the verifier stays out of the URL"
        );
        Ok(())
    }

    #[test]
    fn keeps_the_endpoints_own_query_and_never_lets_a_provider_parameter_override()
    -> anyhow::Result<()> {
        let pkce = Pkce::generate();
        let provider = provider(
            "https://login.example.com/authorize?tenant_hint=a",
            &[("state", "fixed"), ("code_challenge_method", "plain")],
        );
        let url = authorization_url(
            &provider,
            &AuthorizationRequest {
                redirect_url: "https://seq.example.com/cb",
                state: "random",
                pkce: &pkce,
                login_hint: None,
            },
        )?;
        let pairs = pairs(&url);
        assert_eq!(pairs[0], ("tenant_hint".into(), "a".into()));
        let values = |name: &str| {
            pairs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(values("state"), ["random"]);
        assert_eq!(values("code_challenge_method"), ["S256"]);
        assert!(values("login_hint").is_empty());
        Ok(())
    }

    #[test]
    fn an_invalid_endpoint_names_the_key_not_the_url() -> anyhow::Result<()> {
        let pkce = Pkce::generate();
        let Err(error) = authorization_url(
            &provider("not a url", &[]),
            &AuthorizationRequest {
                redirect_url: "https://seq.example.com/cb",
                state: "s",
                pkce: &pkce,
                login_hint: None,
            },
        ) else {
            anyhow::bail!("an invalid authorize_url gave a URL");
        };
        assert_eq!(error.endpoint, "authorize_url");
        assert!(error.to_string().contains("authorize_url"), "{error}");
        assert!(!error.to_string().contains("not a url"), "{error}");
        Ok(())
    }
}
