#![allow(clippy::result_large_err)] // figment::Jail fixes the closures' error type.

use figment::Jail;
use secrecy::ExposeSecret;

use super::super::tests::{jail, load_in_jail};
use super::OAuthProviderConfig;
use crate::mail::Security;

const SECRET: &str = "GOCSPX-not-a-real-secret-7f3a";

/// Turns OAuth on and enables `provider` through the environment.
fn enable(jail: &mut Jail, provider: &str) {
    jail.set_env(
        "SEQ_OAUTH__REDIRECT_URL",
        "https://seq.example.com/api/v1/oauth/callback",
    );
    let prefix = format!("SEQ_OAUTH__PROVIDERS__{}", provider.to_ascii_uppercase());
    jail.set_env(format!("{prefix}__CLIENT_ID"), "client-1.apps.example");
    jail.set_env(format!("{prefix}__CLIENT_SECRET"), SECRET);
}

/// Loads with `provider` enabled and `var` set, expecting an error about `key`; returns the
/// error's message.
fn rejected(provider: &str, var: &str, value: &str, key: &str) -> String {
    let mut message = String::new();
    jail(|jail| {
        enable(jail, provider);
        jail.set_env(var, value);
        let error = load_in_jail(None)
            .err()
            .ok_or_else(|| format!("{var}={value} accepted"))?;
        assert_eq!(error.key(), Some(key), "{var}={value}: {error}");
        message = error.to_string();
        assert!(message.contains(var), "{message}");
        Ok(())
    });
    message
}

fn mail_servers(provider: &OAuthProviderConfig) -> (&str, u16, Security, &str, u16) {
    (
        &provider.smtp_host,
        provider.smtp_port,
        provider.smtp_security,
        &provider.imap_host,
        provider.imap_port,
    )
}

#[test]
fn defaults_are_the_real_endpoints_and_oauth_is_off() {
    jail(|_| {
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let oauth = &config.oauth;
        assert_eq!(oauth.redirect_url(), None);
        assert_eq!(oauth.state_ttl_seconds, 600);
        assert_eq!(oauth.refresh_before_expiry_seconds, 300);
        assert!(oauth.provider("google").is_none());
        assert!(oauth.provider("microsoft").is_none());

        let google = &oauth.providers.google;
        assert!(!google.enabled());
        assert_eq!(
            google.authorize_url(),
            "https://accounts.google.com/o/oauth2/v2/auth"
        );
        assert_eq!(google.token_url(), "https://oauth2.googleapis.com/token");
        assert_eq!(
            google.revoke_url().as_deref(),
            Some("https://oauth2.googleapis.com/revoke")
        );
        assert_eq!(
            google.scopes,
            ["https://mail.google.com/", "openid", "email"]
        );
        assert_eq!(
            google.authorize_params().collect::<Vec<_>>(),
            [("access_type", "offline"), ("prompt", "consent")]
        );
        assert_eq!(
            mail_servers(google),
            ("smtp.gmail.com", 465, Security::Tls, "imap.gmail.com", 993)
        );

        let microsoft = &oauth.providers.microsoft;
        assert_eq!(microsoft.tenant, "common");
        assert_eq!(
            microsoft.authorize_url(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
        );
        assert_eq!(
            microsoft.token_url(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(microsoft.revoke_url(), None);
        assert_eq!(
            microsoft.scopes,
            [
                "https://outlook.office.com/SMTP.Send",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "offline_access",
                "openid",
                "email"
            ]
        );
        assert_eq!(
            microsoft.authorize_params().collect::<Vec<_>>(),
            [("prompt", "select_account")]
        );
        assert_eq!(
            mail_servers(microsoft),
            (
                "smtp.office365.com",
                587,
                Security::Starttls,
                "outlook.office365.com",
                993
            )
        );
        Ok(())
    });
}

#[test]
fn environment_enables_a_provider_and_overrides_its_settings() {
    jail(|jail| {
        enable(jail, "google");
        jail.set_env(
            "SEQ_OAUTH__PROVIDERS__GOOGLE__TOKEN_URL",
            "http://127.0.0.1:4444/oauth2/token",
        );
        jail.set_env(
            "SEQ_OAUTH__PROVIDERS__GOOGLE__SCOPES",
            "[\"openid\", \"offline\"]",
        );
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__SMTP_SECURITY", "starttls");
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__IMAP_PORT", "10993");
        // Tables merge: a parameter is added, and a default one dropped by emptying it.
        jail.set_env(
            "SEQ_OAUTH__PROVIDERS__GOOGLE__AUTHORIZE_PARAMS__HD",
            "example.com",
        );
        jail.set_env(
            "SEQ_OAUTH__PROVIDERS__GOOGLE__AUTHORIZE_PARAMS__PROMPT",
            "\"\"",
        );
        jail.set_env("SEQ_OAUTH__STATE_TTL_SECONDS", "120");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let oauth = &config.oauth;
        assert_eq!(
            oauth.redirect_url(),
            Some("https://seq.example.com/api/v1/oauth/callback")
        );
        assert_eq!(oauth.state_ttl_seconds, 120);
        let google = oauth.provider("google").ok_or("google not enabled")?;
        assert_eq!(google.client_id(), "client-1.apps.example");
        assert_eq!(google.client_secret().expose_secret(), SECRET);
        assert_eq!(google.token_url(), "http://127.0.0.1:4444/oauth2/token");
        assert_eq!(google.scopes, ["openid", "offline"]);
        assert_eq!(google.smtp_security, Security::Starttls);
        assert_eq!(google.imap_port, 10993);
        assert_eq!(
            google.authorize_params().collect::<Vec<_>>(),
            [("access_type", "offline"), ("hd", "example.com")]
        );
        assert!(oauth.provider("microsoft").is_none(), "not enabled");
        assert!(oauth.provider("yahoo").is_none());
        Ok(())
    });
}

#[test]
fn microsoft_endpoints_take_the_configured_tenant() {
    jail(|jail| {
        enable(jail, "microsoft");
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        jail.set_env("SEQ_OAUTH__PROVIDERS__MICROSOFT__TENANT", tenant);
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let microsoft = config
            .oauth
            .provider("microsoft")
            .ok_or("microsoft not enabled")?;
        assert_eq!(
            microsoft.authorize_url(),
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize")
        );
        assert_eq!(
            microsoft.token_url(),
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
        );
        assert!(config.oauth.provider("google").is_none());
        Ok(())
    });
}

#[test]
fn a_file_points_a_provider_at_a_local_authorization_server() {
    jail(|jail| {
        jail.create_file(
            "seq.toml",
            "[oauth]\nredirect_url = \"http://127.0.0.1:8080/api/v1/oauth/callback\"\n\
             [oauth.providers.microsoft]\nclient_id = \"seq\"\nclient_secret = \"s3cret\"\n\
             tenant = \"test-realm\"\n\
             authorize_url = \"http://127.0.0.1:8180/realms/{tenant}/auth\"\n\
             token_url = \"http://127.0.0.1:8180/realms/{tenant}/token\"\n\
             revoke_url = \"http://127.0.0.1:8180/realms/{tenant}/revoke\"\n\
             authorize_params = { prompt = \"\" }\n\
             smtp_host = \"127.0.0.1\"\nsmtp_port = 10587\nsmtp_security = \"none\"\n",
        )?;
        let config = load_in_jail(Some("seq.toml")).map_err(|e| e.to_string())?;
        let microsoft = config
            .oauth
            .provider("microsoft")
            .ok_or("microsoft not enabled")?;
        assert_eq!(
            microsoft.token_url(),
            "http://127.0.0.1:8180/realms/test-realm/token"
        );
        assert_eq!(
            microsoft.revoke_url().as_deref(),
            Some("http://127.0.0.1:8180/realms/test-realm/revoke")
        );
        assert_eq!(microsoft.authorize_params().count(), 0);
        assert_eq!(microsoft.smtp_security, Security::None);
        assert_eq!(microsoft.imap_host, "outlook.office365.com", "default kept");
        Ok(())
    });
}

#[test]
fn the_client_secret_never_prints() {
    jail(|jail| {
        enable(jail, "google");
        enable(jail, "microsoft");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("client-1.apps.example"), "{debug}");

        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__SCOPES", "[]");
        let message = load_in_jail(None)
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(!message.contains(SECRET), "{message}");
        Ok(())
    });
}

#[test]
fn an_enabled_provider_needs_its_client_secret() {
    jail(|jail| {
        jail.set_env(
            "SEQ_OAUTH__REDIRECT_URL",
            "https://seq.example.com/api/v1/oauth/callback",
        );
        jail.set_env("SEQ_OAUTH__PROVIDERS__MICROSOFT__CLIENT_ID", "app-id");
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("oauth.providers.microsoft.client_secret"));
        let message = error.to_string();
        assert!(message.contains("built-in defaults"), "{message}");
        assert!(
            message.contains("oauth.providers.microsoft.client_id"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn an_enabled_provider_needs_the_redirect_url() {
    jail(|jail| {
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__CLIENT_ID", "client");
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__CLIENT_SECRET", SECRET);
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("oauth.redirect_url"));
        let message = error.to_string();
        assert!(
            message.contains("oauth.providers.google.client_id"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn the_redirect_url_must_be_an_absolute_http_url_without_fragment() {
    for bad in [
        "seq.example.com/api/v1/oauth/callback",
        "https://",
        "ftp://seq.example.com/cb",
        "https://seq.example.com/api/v1/oauth/callback#x",
    ] {
        rejected(
            "google",
            "SEQ_OAUTH__REDIRECT_URL",
            bad,
            "oauth.redirect_url",
        );
    }
}

#[test]
fn endpoints_must_be_absolute_http_urls() {
    for (var, key) in [
        (
            "SEQ_OAUTH__PROVIDERS__GOOGLE__AUTHORIZE_URL",
            "oauth.providers.google.authorize_url",
        ),
        (
            "SEQ_OAUTH__PROVIDERS__GOOGLE__TOKEN_URL",
            "oauth.providers.google.token_url",
        ),
        (
            "SEQ_OAUTH__PROVIDERS__GOOGLE__REVOKE_URL",
            "oauth.providers.google.revoke_url",
        ),
    ] {
        rejected("google", var, "/oauth2/token", key);
        rejected("google", var, "http://", key);
    }
}

#[test]
fn endpoint_errors_name_the_file_that_set_them() {
    jail(|jail| {
        enable(jail, "microsoft");
        jail.create_file(
            "seq.toml",
            "[oauth.providers.microsoft]\ntoken_url = \"login.example/{tenant}/token\"\n",
        )?;
        let error = load_in_jail(Some("seq.toml"))
            .err()
            .ok_or("expected an error")?;
        assert_eq!(error.key(), Some("oauth.providers.microsoft.token_url"));
        assert!(error.to_string().contains("seq.toml"), "{error}");
        Ok(())
    });
}

#[test]
fn an_empty_revoke_url_means_no_revocation() {
    jail(|jail| {
        enable(jail, "google");
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__REVOKE_URL", "\"\"");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        let google = config.oauth.provider("google").ok_or("not enabled")?;
        assert_eq!(google.revoke_url(), None);
        Ok(())
    });
}

#[test]
fn microsoft_needs_a_tenant_of_safe_characters() {
    let message = rejected(
        "microsoft",
        "SEQ_OAUTH__PROVIDERS__MICROSOFT__TENANT",
        "\"\"",
        "oauth.providers.microsoft.tenant",
    );
    assert!(message.contains("organizations"), "{message}");
    for bad in ["common/../x", "contoso onmicrosoft", "a?b"] {
        rejected(
            "microsoft",
            "SEQ_OAUTH__PROVIDERS__MICROSOFT__TENANT",
            bad,
            "oauth.providers.microsoft.tenant",
        );
    }
    jail(|jail| {
        enable(jail, "microsoft");
        jail.set_env(
            "SEQ_OAUTH__PROVIDERS__MICROSOFT__TENANT",
            "contoso.onmicrosoft.com",
        );
        load_in_jail(None).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn a_url_with_the_tenant_placeholder_needs_a_tenant() {
    jail(|jail| {
        enable(jail, "google");
        jail.set_env(
            "SEQ_OAUTH__PROVIDERS__GOOGLE__TOKEN_URL",
            "https://login.example/{tenant}/token",
        );
        let error = load_in_jail(None).err().ok_or("expected an error")?;
        assert_eq!(error.key(), Some("oauth.providers.google.tenant"));
        assert!(error.to_string().contains("built-in defaults"), "{error}");
        Ok(())
    });
}

#[test]
fn scopes_must_be_listed_one_by_one() {
    for bad in ["[]", "[\"openid email\"]", "[\"openid\", \"\"]"] {
        rejected(
            "google",
            "SEQ_OAUTH__PROVIDERS__GOOGLE__SCOPES",
            bad,
            "oauth.providers.google.scopes",
        );
    }
}

#[test]
fn mail_servers_need_a_host_and_a_port() {
    for (field, value) in [
        ("SMTP_PORT", "0"),
        ("IMAP_PORT", "0"),
        ("SMTP_HOST", "\" \""),
        ("IMAP_HOST", "\"\""),
    ] {
        rejected(
            "microsoft",
            &format!("SEQ_OAUTH__PROVIDERS__MICROSOFT__{field}"),
            value,
            &format!("oauth.providers.microsoft.{}", field.to_ascii_lowercase()),
        );
    }
}

#[test]
fn smtp_security_is_spelled_as_in_the_api() {
    jail(|jail| {
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__SMTP_SECURITY", "ssl");
        let message = load_in_jail(None)
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(
            message.contains("`oauth.providers.google.smtp_security`"),
            "{message}"
        );
        assert!(
            message.contains("SEQ_OAUTH__PROVIDERS__GOOGLE__SMTP_SECURITY"),
            "{message}"
        );
        assert!(message.contains("starttls"), "{message}");
        Ok(())
    });
}

#[test]
fn authorize_params_cannot_override_the_request_itself() {
    for param in ["STATE", "CODE_CHALLENGE_METHOD", "REDIRECT_URI"] {
        rejected(
            "google",
            &format!("SEQ_OAUTH__PROVIDERS__GOOGLE__AUTHORIZE_PARAMS__{param}"),
            "x",
            &format!(
                "oauth.providers.google.authorize_params.{}",
                param.to_ascii_lowercase()
            ),
        );
    }
}

#[test]
fn state_lifetime_and_refresh_margin_are_bounded() {
    rejected(
        "google",
        "SEQ_OAUTH__STATE_TTL_SECONDS",
        "0",
        "oauth.state_ttl_seconds",
    );
    rejected(
        "google",
        "SEQ_OAUTH__REFRESH_BEFORE_EXPIRY_SECONDS",
        "3600",
        "oauth.refresh_before_expiry_seconds",
    );
}

#[test]
fn a_disabled_provider_is_not_checked() {
    jail(|jail| {
        jail.set_env("SEQ_OAUTH__PROVIDERS__MICROSOFT__TENANT", "\"\"");
        jail.set_env("SEQ_OAUTH__PROVIDERS__MICROSOFT__SCOPES", "[]");
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__TOKEN_URL", "nonsense");
        let config = load_in_jail(None).map_err(|e| e.to_string())?;
        assert!(config.oauth.provider("microsoft").is_none());
        Ok(())
    });
}

#[test]
fn unknown_providers_and_keys_are_rejected() {
    jail(|jail| {
        jail.create_file("seq.toml", "[oauth.providers.yahoo]\nclient_id = \"x\"\n")?;
        let message = load_in_jail(Some("seq.toml"))
            .err()
            .ok_or("an unknown provider accepted")?
            .to_string();
        assert!(message.contains("yahoo"), "{message}");
        jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__CLIENTID", "x");
        let message = load_in_jail(None)
            .err()
            .ok_or("an unknown key accepted")?
            .to_string();
        assert!(message.contains("clientid"), "{message}");
        Ok(())
    });
}

#[test]
fn tokens_go_unencrypted_only_to_a_loopback_server() {
    for field in ["SMTP", "IMAP"] {
        rejected(
            "google",
            &format!("SEQ_OAUTH__PROVIDERS__GOOGLE__{field}_SECURITY"),
            "none",
            &format!(
                "oauth.providers.google.{}_security",
                field.to_ascii_lowercase()
            ),
        );
    }
    for host in ["127.0.0.1", "localhost", "::1"] {
        jail(|jail| {
            enable(jail, "google");
            jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__SMTP_HOST", host);
            jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__SMTP_SECURITY", "none");
            jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__IMAP_HOST", host);
            jail.set_env("SEQ_OAUTH__PROVIDERS__GOOGLE__IMAP_SECURITY", "none");
            let config = load_in_jail(None).map_err(|e| e.to_string())?;
            assert_eq!(config.oauth.providers.google.imap_security, Security::None);
            Ok(())
        });
    }
}
