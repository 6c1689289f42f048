//! What became of one send, and how a failed step is classified.

use std::fmt;
use std::time::Duration;

use domain::mail::{Login, redact};

/// The step of an SMTP session a send failed at, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// TCP connect, the greeting and EHLO.
    Connect,
    /// STARTTLS and its handshake, or the implicit TLS handshake.
    Tls,
    /// AUTH with the mailbox's login.
    Auth,
    MailFrom,
    RcptTo,
    /// The `DATA` command, before any of the message was sent.
    Data,
    /// The message and its final dot were handed over; waiting for the reply.
    AfterData,
}

impl Stage {
    /// A stable lowercase name, for logs, metrics and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
            Stage::AfterData => "after_data",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one email. Every text is bounded and never contains the login's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// A 2xx reply after the final dot: the server took responsibility for the email.
    Accepted { reply: String },
    /// Safe to send again later: a 4xx reply at any stage, or a connection, TLS or timeout
    /// failure before the message was handed over (`stage < AfterData`).
    Transient {
        stage: Stage,
        code: Option<u16>,
        reply: String,
    },
    /// A 5xx reply at any stage (`code` is `Some`), or the client refusing to go on because
    /// the server lacks something required (`code` is `None`: STARTTLS not offered, no
    /// usable AUTH mechanism, a non-ASCII message without 8BITMIME or SMTPUTF8). Sending the
    /// same email the same way again would fail the same way. `RcptTo`, `Data` and
    /// `AfterData` concern the recipient or the email; `Connect`, `Tls`, `Auth` and
    /// `MailFrom` concern the mailbox.
    Permanent {
        stage: Stage,
        code: Option<u16>,
        reply: String,
    },
    /// The message was handed over but no reply came (timeout, connection lost): it may or
    /// may not have been delivered, so it must never be sent again automatically (RFC 1047).
    Unknown { error: String },
}

impl SendOutcome {
    /// `accepted`, `transient`, `permanent` or `unknown` (metric labels, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Transient { .. } => "transient",
            SendOutcome::Permanent { .. } => "permanent",
            SendOutcome::Unknown { .. } => "unknown",
        }
    }

    /// The stage a failure happened at (`AfterData` for `Unknown`), `None` when accepted.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            SendOutcome::Accepted { .. } => None,
            SendOutcome::Transient { stage, .. } | SendOutcome::Permanent { stage, .. } => {
                Some(*stage)
            }
            SendOutcome::Unknown { .. } => Some(Stage::AfterData),
        }
    }
}

/// A step that did not succeed, before it is turned into a [`SendOutcome`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) stage: Stage,
    pub(crate) cause: Cause,
}

#[derive(Debug)]
pub(crate) enum Cause {
    /// A negative reply from the server.
    Reply { code: u16, text: String },
    /// The client refused to continue (a capability the server lacks, bad TLS setup).
    Refused(String),
    /// The connection broke: I/O error, TLS error, unparsable or missing reply.
    Broken(String),
    /// The step's timeout passed.
    TimedOut(Duration),
}

impl Failure {
    pub(crate) fn new(stage: Stage, cause: Cause) -> Self {
        Self { stage, cause }
    }

    /// Classifies a lettre error of `stage`.
    pub(crate) fn from_lettre(stage: Stage, error: &lettre::transport::smtp::Error) -> Self {
        let cause = if let Some(code) = error.status() {
            let text = std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_default();
            Cause::Reply {
                code: u16::from(code),
                text,
            }
        } else if error.is_client() {
            Cause::Refused(error.to_string())
        } else {
            Cause::Broken(error.to_string())
        };
        Self { stage, cause }
    }

    /// Whether the connection is still in a state where saying QUIT makes sense.
    pub(crate) fn connection_alive(&self) -> bool {
        matches!(self.cause, Cause::Reply { code, .. } if code != 421)
            || matches!(self.cause, Cause::Refused(_))
    }

    /// A reused connection failing like this at MAIL FROM was most likely closed by the server
    /// while idle: nothing of the email was sent, so a fresh connection may be tried.
    pub(crate) fn looks_stale(&self) -> bool {
        self.stage == Stage::MailFrom
            && matches!(
                self.cause,
                Cause::Broken(_) | Cause::Reply { code: 421, .. }
            )
    }

    pub(crate) fn into_outcome(self, login: Option<&Login>) -> SendOutcome {
        let stage = self.stage;
        match self.cause {
            Cause::Reply { code, text } => {
                let reply = redact(&format!("{code} {text}"), login);
                if (400..500).contains(&code) {
                    SendOutcome::Transient {
                        stage,
                        code: Some(code),
                        reply,
                    }
                } else if code >= 500 {
                    SendOutcome::Permanent {
                        stage,
                        code: Some(code),
                        reply,
                    }
                } else {
                    broken(stage, reply)
                }
            }
            Cause::Refused(text) => SendOutcome::Permanent {
                stage,
                code: None,
                reply: redact(&text, login),
            },
            Cause::Broken(text) => broken(stage, redact(&text, login)),
            Cause::TimedOut(after) => broken(
                stage,
                format!("no answer at {stage} within {} ms", after.as_millis()),
            ),
        }
    }
}

/// No usable reply: retryable before the message was handed over, unknown after.
fn broken(stage: Stage, text: String) -> SendOutcome {
    if stage < Stage::AfterData {
        SendOutcome::Transient {
            stage,
            code: None,
            reply: text,
        }
    } else {
        SendOutcome::Unknown { error: text }
    }
}
