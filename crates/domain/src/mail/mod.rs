//! Connections to the mail servers of connected mailboxes: SMTP for sending, IMAP for reply
//! detection. The API uses them to check a mailbox's settings (`check`); the sender worker
//! and the inbox watcher build on the same connection code.
//!
//! **Invariants:** an error message from this module never contains the password it was
//! given, even when a server echoes what it received ([`scrub`] removes the plaintext and the
//! encodings SMTP and IMAP send it in), so messages can be returned to clients and stored.
//! Every connection is made by [`crate::outbound::OutboundGuard`] (the host is a tenant's
//! choice), and TLS is negotiated over that connection, with the certificate checked against
//! the host name the tenant gave.

pub mod hello;
pub mod imap;
pub mod mailbox_check;
pub mod smtp;
pub mod xoauth2;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long one check (connect, greeting, TLS, login) may take in total.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest error message kept; servers can answer with long texts.
const MAX_MESSAGE_CHARS: usize = 400;

/// Transport security of a mail server connection. Deserialized (in configuration) with the
/// spelling of [`Security::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plaintext (only sensible on a trusted network).
    None,
    /// Plaintext connection upgraded with STARTTLS, which must be offered.
    Starttls,
    /// TLS from the first byte (implicit TLS, ports 465 and 993).
    Tls,
}

impl Security {
    pub const ALL: [Security; 3] = [Security::None, Security::Starttls, Security::Tls];

    /// The spelling stored in the database and used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Security {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Security::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("unknown security `{value}`"))
    }
}

/// Where a mail server listens and how to secure the connection.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

/// A login. The password is decrypted only for the connection and never printed.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    /// The password, or with [`LoginMethod::Xoauth2`] the OAuth 2.0 access token.
    pub password: SecretString,
    pub method: LoginMethod,
}

/// How a [`Login`] authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginMethod {
    /// SMTP `AUTH PLAIN`/`LOGIN`, IMAP `LOGIN`.
    #[default]
    Password,
    /// XOAUTH2 with an access token (mailboxes connected with Google or Microsoft).
    Xoauth2,
}

impl Login {
    pub fn password(username: impl Into<String>, password: SecretString) -> Self {
        Login {
            username: username.into(),
            password,
            method: LoginMethod::Password,
        }
    }

    pub fn xoauth2(username: impl Into<String>, access_token: SecretString) -> Self {
        Login {
            username: username.into(),
            password: access_token,
            method: LoginMethod::Xoauth2,
        }
    }
}

/// Why a check failed, in words fit for a client: never the password (see [`scrub`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(String);

impl CheckError {
    /// Builds the message, removing every form of the login's password it may contain.
    pub fn new(message: impl Into<String>, login: Option<&Login>) -> Self {
        Self(redact(&message.into(), login))
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// `message` fit to return or store: without the login's password (see [`scrub`]), on one
/// line and at most `MAX_MESSAGE_CHARS` characters long.
pub fn redact(message: &str, login: Option<&Login>) -> String {
    match login {
        Some(login) => truncate(&scrub(message, login)),
        None => truncate(message),
    }
}

/// Removes the password (or access token) from `message`: as typed, as IMAP quotes it, as
/// base64 (SMTP AUTH LOGIN) and inside the base64 of SMTP AUTH PLAIN and XOAUTH2.
pub fn scrub(message: &str, login: &Login) -> String {
    let password = login.password.expose_secret();
    if password.is_empty() {
        return message.to_owned();
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = [
        b64.encode(format!("\0{}\0{password}", login.username)),
        b64.encode(xoauth2::initial_response(&login.username, password)),
        b64.encode(password),
        password.replace('\\', "\\\\").replace('"', "\\\""),
        password.to_owned(),
    ];
    let mut out = message.to_owned();
    for form in forms.iter().filter(|f| !f.is_empty()) {
        out = out.replace(form.as_str(), "[redacted]");
    }
    out
}

fn truncate(message: &str) -> String {
    let single_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if single_line.chars().count() <= MAX_MESSAGE_CHARS {
        return single_line;
    }
    let mut cut: String = single_line.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push('…');
    cut
}

/// `host` as a TLS server name: a DNS name, or an IP address (brackets removed).
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim();
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(unbracketed.to_owned())
        .map_err(|_| format!("`{host}` is not a valid TLS server name"))
}

/// The TLS handshake over a connected stream, verifying the certificate against `host`.
async fn tls_handshake<S>(host: &str, stream: S) -> Result<TlsStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    TlsConnector::from(tls_config()?)
        .connect(server_name(host)?, stream)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))
}

/// rustls with ring and Mozilla's root certificates, independent of the host's trust store,
/// so the check behaves the same in a container as on a laptop.
pub fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(password: &str) -> Login {
        Login {
            method: LoginMethod::Password,
            username: "me@example.com".into(),
            password: SecretString::from(password.to_owned()),
        }
    }

    #[test]
    fn security_round_trips_through_its_spelling() {
        for security in Security::ALL {
            assert_eq!(security.as_str().parse::<Security>(), Ok(security));
        }
        assert!("ssl".parse::<Security>().is_err());
    }

    #[test]
    fn scrub_removes_every_encoding_of_the_password() {
        let login = login("s3cr\"et\\pw");
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain = b64.encode("\0me@example.com\0s3cr\"et\\pw");
        let message = format!(
            "535 rejected AUTH PLAIN {plain}; LOGIN {}; imap LOGIN \"me\" \"s3cr\\\"et\\\\pw\"; raw s3cr\"et\\pw",
            b64.encode("s3cr\"et\\pw"),
        );
        let scrubbed = CheckError::new(message, Some(&login));
        let text = scrubbed.message();
        assert!(!text.contains("s3cr"), "{text}");
        assert!(!text.contains(&plain), "{text}");
        assert!(!text.contains(&b64.encode("s3cr\"et\\pw")), "{text}");
        assert!(text.contains("535 rejected"), "{text}");
    }

    #[test]
    fn long_or_multiline_messages_are_bounded() {
        let error = CheckError::new(format!("a\r\nb{}", "x".repeat(1000)), None);
        assert!(error.message().starts_with("a  b"));
        assert_eq!(error.message().chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn tls_configuration_builds() {
        assert!(tls_config().is_ok());
    }

    #[test]
    fn tls_server_names_are_the_host_given() {
        assert!(matches!(
            server_name("smtp.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("[2606:4700::1111]"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(server_name("bad name").is_err());
    }
}
