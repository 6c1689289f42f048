//! Composes, signs and sends one prepared message, and says how it ended.

use chrono::{DateTime, Utc};
use domain::oauth::{AccessError, AccessTokens};
use domain::tracking_token::TokenSigner;
use lettre::address::Envelope;

use crate::compose;
use crate::dkim::DkimSigners;
use crate::outcome::Outcome;
use crate::prepare::Prepared;
use crate::smtp::{MailboxServer, Pools, SendOutcome, Stage};

/// What sending needs, shared by every send of a worker.
pub struct Delivery {
    pub signer: TokenSigner,
    pub dkim: DkimSigners,
    pub pools: Pools,
    /// The access tokens of mailboxes connected with OAuth.
    pub tokens: AccessTokens,
}

impl Delivery {
    pub async fn deliver(&self, prepared: &Prepared, now: DateTime<Utc>) -> Outcome {
        let email = &prepared.email;
        let built = compose::compose_with_subject(email, &self.signer);
        let (subject, mut message) = match built {
            Ok(built) => built,
            Err(error @ compose::ComposeError::MissingVariable { .. }) => {
                return Outcome::Held {
                    reason: error.to_string(),
                };
            }
            Err(error) => {
                return Outcome::Failed {
                    reason: error_chain(&error),
                };
            }
        };
        let from_domain = email
            .from
            .address
            .rsplit_once('@')
            .map_or("", |(_, domain)| domain);
        self.dkim.sign(&mut message, from_domain);
        let bytes = message.formatted();
        let sent = if prepared.oauth {
            match self
                .send_with_token(&prepared.server, &prepared.envelope, &bytes)
                .await
            {
                Ok(sent) => sent,
                Err(outcome) => return outcome,
            }
        } else {
            self.pools
                .send(&prepared.server, &prepared.envelope, &bytes)
                .await
        };
        classify(sent, subject, now)
    }

    /// Sends as a mailbox connected with OAuth: logs in with its access token (XOAUTH2), and
    /// when the server refuses that token, once more with a refreshed one. Nothing of the
    /// email is sent before AUTH succeeds, so the second try cannot duplicate it.
    async fn send_with_token(
        &self,
        server: &MailboxServer,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<SendOutcome, Outcome> {
        let mailbox_id = server.mailbox_id;
        let token = self.tokens.current(mailbox_id).await.map_err(unavailable)?;
        let mut server = server.clone();
        server.login = Some(token.login());
        let sent = self.pools.send(&server, envelope, bytes).await;
        if !matches!(
            sent,
            SendOutcome::Permanent {
                stage: Stage::Auth,
                ..
            }
        ) {
            return Ok(sent);
        }
        metrics::counter!("oauth_token_rejections_total", "protocol" => "smtp").increment(1);
        let token = self
            .tokens
            .after_rejection(mailbox_id, token.generation)
            .await
            .map_err(unavailable)?;
        server.login = Some(token.login());
        Ok(self.pools.send(&server, envelope, bytes).await)
    }
}

/// The outcome of a send whose mailbox has no usable access token.
fn unavailable(error: AccessError) -> Outcome {
    match error {
        // The operator's configuration, not the mailbox, is at fault; once fixed the
        // mailbox's check clears `error`.
        AccessError::ProviderNotConfigured(_) => Outcome::MailboxFailing {
            error: error.to_string(),
        },
        // The mailbox is `reconnect_required` now: the scheduler parks the message until a
        // reconnect, without using up its retries. The rest passes.
        _ => Outcome::Retry {
            error: error.to_string(),
        },
    }
}

/// Which SMTP outcomes are the recipient's, the mailbox's, or nobody's for now.
pub fn classify(sent: SendOutcome, subject: String, now: DateTime<Utc>) -> Outcome {
    match sent {
        SendOutcome::Accepted { reply } => Outcome::Sent {
            at: now,
            reply,
            subject,
        },
        SendOutcome::Transient { stage, code, reply } => Outcome::Retry {
            error: describe(stage, code, &reply),
        },
        SendOutcome::Permanent { stage, code, reply } => match (stage, code) {
            (Stage::Connect | Stage::Tls | Stage::Auth | Stage::MailFrom, _) => {
                Outcome::MailboxFailing {
                    error: describe(stage, code, &reply),
                }
            }
            // The server refused the recipient or the email: a hard bounce.
            (Stage::RcptTo | Stage::Data | Stage::AfterData, Some(_)) => Outcome::Bounced {
                reply: describe(stage, code, &reply),
            },
            // We refused to go on (say, an address the server cannot take): sending it again
            // would fail the same way.
            (Stage::RcptTo | Stage::Data | Stage::AfterData, None) => Outcome::Failed {
                reason: describe(stage, code, &reply),
            },
        },
        SendOutcome::Unknown { error } => Outcome::Unknown { error },
    }
}

fn describe(stage: Stage, code: Option<u16>, reply: &str) -> String {
    match code {
        Some(code) => format!("{stage}: {code} {reply}"),
        None => format!("{stage}: {reply}"),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
