//! The check of a connected mailbox's stored settings: SMTP (connect, EHLO, AUTH when a
//! username is set) and, when configured, IMAP (connect, LOGIN), at the same time. The API's
//! `POST /mailboxes/{id}/verify` and the sender worker's automatic re-checks run this one
//! check, so a mailbox passes or fails the same way whoever asks.
//!
//! Passwords are decrypted for the connections only (`SecretString`, dropped afterwards),
//! and every connection goes through the [`OutboundGuard`].

use std::time::Duration;

use secrecy::SecretString;

use super::{CheckError, Login, Security, Server};
use crate::crypto::{CryptoError, SecretCipher};
use crate::db::mailboxes::{Mailbox, imap_password_context, smtp_password_context};
use crate::oauth::AccessToken;
use crate::outbound::OutboundGuard;

/// What each server answered.
#[derive(Debug, Clone)]
pub struct MailboxCheck {
    pub smtp: Result<(), CheckError>,
    /// `None` when the mailbox has no IMAP settings.
    pub imap: Option<Result<(), CheckError>>,
}

impl MailboxCheck {
    /// What failed, in the words stored in `status_reason`; `None` when everything passed.
    pub fn failure(&self) -> Option<String> {
        let mut failures = Vec::new();
        if let Err(error) = &self.smtp {
            failures.push(format!("SMTP check failed: {error}"));
        }
        if let Some(Err(error)) = &self.imap {
            failures.push(format!("IMAP check failed: {error}"));
        }
        (!failures.is_empty()).then(|| failures.join("; "))
    }
}

/// Why a check could not even start.
#[derive(Debug, thiserror::Error)]
pub enum CheckSetupError {
    /// No `security.encryption_keys` to decrypt a stored password with.
    #[error("security.encryption_keys is not configured")]
    NoEncryptionKeys,
    /// A stored password does not decrypt (its key was removed, or the row was tampered
    /// with). The message names key ids and causes, never key material or plaintext.
    #[error("the stored {what} cannot be decrypted ({cause})")]
    Undecryptable {
        what: &'static str,
        cause: CryptoError,
    },
    /// A stored column holds what the API never writes.
    #[error("the stored mailbox settings are invalid: {0}")]
    Invalid(String),
}

/// Checks `mailbox`'s servers, each within `timeout`. A mailbox connected with OAuth logs in
/// with `oauth`'s access token (XOAUTH2) as the connected address, on SMTP and IMAP alike;
/// the caller gets it from `crate::oauth::AccessTokens`.
pub async fn check_mailbox(
    guard: &OutboundGuard,
    cipher: Option<&SecretCipher>,
    mailbox: &Mailbox,
    oauth: Option<&AccessToken>,
    timeout: Duration,
) -> Result<MailboxCheck, CheckSetupError> {
    let smtp_server = Server {
        host: mailbox.smtp_host.clone(),
        port: port(mailbox.smtp_port)?,
        security: security(&mailbox.smtp_security)?,
    };
    let smtp_login = match (
        oauth,
        &mailbox.smtp_username,
        &mailbox.smtp_password_encrypted,
    ) {
        (Some(token), ..) => Some(token.login()),
        (None, Some(username), Some(stored)) => Some(Login::password(
            username.clone(),
            decrypt(
                cipher,
                stored,
                &smtp_password_context(mailbox.id),
                "SMTP password",
            )?,
        )),
        _ => None,
    };
    let imap = match (
        &mailbox.imap_host,
        mailbox.imap_port,
        &mailbox.imap_security,
        &mailbox.imap_username,
        &mailbox.imap_password_encrypted,
    ) {
        (None, ..) => None,
        (Some(host), Some(imap_port), Some(imap_security), username, stored)
            if oauth.is_some() || (username.is_some() && stored.is_some()) =>
        {
            let login = match (oauth, username, stored) {
                (Some(token), ..) => token.login(),
                (None, Some(username), Some(stored)) => Login::password(
                    username.clone(),
                    decrypt(
                        cipher,
                        stored,
                        &imap_password_context(mailbox.id),
                        "IMAP password",
                    )?,
                ),
                _ => {
                    return Err(CheckSetupError::Invalid(
                        "IMAP login without username or password".into(),
                    ));
                }
            };
            Some(Ok((
                Server {
                    host: host.clone(),
                    port: port(imap_port)?,
                    security: security(imap_security)?,
                },
                login,
            )))
        }
        (Some(_), ..) => Some(Err(CheckError::new(
            "IMAP settings are incomplete: set imap.port, imap.security, imap.username and \
             imap.password",
            None,
        ))),
    };

    let (smtp, imap_result) = tokio::join!(
        super::smtp::check(guard, &smtp_server, smtp_login.as_ref(), timeout),
        async {
            match &imap {
                None => None,
                Some(Ok((server, login))) => {
                    Some(super::imap::check(guard, server, login, timeout).await)
                }
                Some(Err(error)) => Some(Err(error.clone())),
            }
        }
    );
    Ok(MailboxCheck {
        smtp,
        imap: imap_result,
    })
}

fn port(value: i32) -> Result<u16, CheckSetupError> {
    u16::try_from(value).map_err(|_| CheckSetupError::Invalid(format!("port {value}")))
}

fn security(value: &str) -> Result<Security, CheckSetupError> {
    value.parse::<Security>().map_err(CheckSetupError::Invalid)
}

fn decrypt(
    cipher: Option<&SecretCipher>,
    stored: &[u8],
    context: &str,
    what: &'static str,
) -> Result<SecretString, CheckSetupError> {
    let cipher = cipher.ok_or(CheckSetupError::NoEncryptionKeys)?;
    cipher
        .decrypt(stored, context)
        .map_err(|cause| match cause {
            CryptoError::NotConfigured => CheckSetupError::NoEncryptionKeys,
            cause => CheckSetupError::Undecryptable { what, cause },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_names_each_server_that_failed() {
        let passed = MailboxCheck {
            smtp: Ok(()),
            imap: None,
        };
        assert_eq!(passed.failure(), None);
        let both = MailboxCheck {
            smtp: Err(CheckError::new("535 no", None)),
            imap: Some(Err(CheckError::new("NO login", None))),
        };
        assert_eq!(
            both.failure().as_deref(),
            Some("SMTP check failed: 535 no; IMAP check failed: NO login")
        );
    }
}
