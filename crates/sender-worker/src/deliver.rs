//! Composes, signs and sends one prepared message, and says how it ended.

use chrono::{DateTime, Utc};
use domain::tracking_token::TokenSigner;

use crate::compose;
use crate::dkim::DkimSigners;
use crate::outcome::Outcome;
use crate::prepare::Prepared;
use crate::smtp::{Pools, SendOutcome, Stage};

/// What sending needs, shared by every send of a worker.
pub struct Delivery {
    pub signer: TokenSigner,
    pub dkim: DkimSigners,
    pub pools: Pools,
}

impl Delivery {
    pub async fn deliver(&self, prepared: &Prepared, now: DateTime<Utc>) -> Outcome {
        let email = &prepared.email;
        let built = compose::subject(email)
            .and_then(|subject| Ok((subject, compose::compose(email, &self.signer)?)));
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
        let sent = self
            .pools
            .send(&prepared.server, &prepared.envelope, &bytes)
            .await;
        classify(sent, subject, now)
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
