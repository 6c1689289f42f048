//! `mailbox-events`: what happened to a mailbox's health, produced through the outbox by the
//! scheduler (the reputation guard paused it), the sender worker (its server refused the
//! login or the sender, so it is in `error`; or an automatic re-check found it working
//! again), the inbox watcher (the outbound guard refused its IMAP host: `error` too) and
//! whoever refreshed an OAuth mailbox's token when the provider refused the grant
//! (`oauth::AccessTokens`). Each is written in the transaction that changed the status, and
//! only when it did change, so a replayed outcome announces nothing twice. Nothing consumes
//! it yet; webhooks will.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kafka::Payload;

/// Which rate of the reputation guard a mailbox went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseCause {
    /// Hard bounces among its latest sends.
    BounceRate,
    /// Spam complaints among its latest sends.
    ComplaintRate,
}

impl PauseCause {
    /// The spelling of the metric label and the payload.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseCause::BounceRate => "bounce_rate",
            PauseCause::ComplaintRate => "complaint_rate",
        }
    }
}

/// Which service found a mailbox failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// The sender worker: the SMTP server refused the login or the sender, or the outbound
    /// guard refused the SMTP host.
    Sending,
    /// The inbox watcher: the outbound guard refused the IMAP host.
    Inbox,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum MailboxEvent {
    /// The reputation guard paused the mailbox; a person resumes it.
    Paused {
        mailbox_id: Uuid,
        /// As stored in the mailbox's `status_reason`, e.g. `bounce rate 4/50 over 5%`.
        reason: String,
        cause: PauseCause,
        /// Bad outcomes (hard bounces or complaints) among the sends looked at.
        bad: u32,
        /// The denominator: the sends looked at, at least the window's size.
        out_of: u32,
        /// The mailbox's threshold that was exceeded (`max_bounce_rate` or
        /// `max_complaint_rate`).
        threshold: f64,
    },
    /// An automatic re-check of a mailbox in `error` passed: it is `active` again.
    Recovered {
        mailbox_id: Uuid,
        /// Re-checks that had failed before this one.
        failed_checks: u32,
    },
    /// The OAuth provider refused the mailbox's grant (`invalid_grant`): it is
    /// `reconnect_required` until its owner connects it again.
    ReconnectRequired {
        mailbox_id: Uuid,
        /// `google` or `microsoft`.
        provider: String,
        /// As stored in the mailbox's `status_reason`.
        reason: String,
    },
    /// The mailbox went from `active` to `error`: the scheduler stops choosing it until an
    /// automatic re-check passes or a person fixes it.
    Failing {
        mailbox_id: Uuid,
        /// As stored in the mailbox's `status_reason`: the stage and the server's answer
        /// (credentials it echoed redacted), or why the outbound guard refused the host.
        reason: String,
        found_by: FoundBy,
    },
}

impl Payload for MailboxEvent {
    const VERSION: u16 = 1;
}

impl MailboxEvent {
    pub fn mailbox_id(&self) -> Uuid {
        match self {
            MailboxEvent::Paused { mailbox_id, .. }
            | MailboxEvent::Recovered { mailbox_id, .. }
            | MailboxEvent::ReconnectRequired { mailbox_id, .. }
            | MailboxEvent::Failing { mailbox_id, .. } => *mailbox_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_travels_as_tagged_json() -> anyhow::Result<()> {
        let event = MailboxEvent::Paused {
            mailbox_id: Uuid::nil(),
            reason: "bounce rate 4/50 over 5%".into(),
            cause: PauseCause::BounceRate,
            bad: 4,
            out_of: 50,
            threshold: 0.05,
        };
        let json = serde_json::to_value(&event)?;
        assert_eq!(json["type"], "paused");
        assert_eq!(json["payload"]["cause"], "bounce_rate");
        assert_eq!(json["payload"]["out_of"], 50);
        assert_eq!(serde_json::from_value::<MailboxEvent>(json)?, event);
        Ok(())
    }

    #[test]
    fn a_reconnect_required_names_the_provider_and_the_reason() -> anyhow::Result<()> {
        let event = MailboxEvent::ReconnectRequired {
            mailbox_id: Uuid::nil(),
            provider: "microsoft".into(),
            reason: "invalid_grant".into(),
        };
        let json = serde_json::to_value(&event)?;
        assert_eq!(json["type"], "reconnect_required");
        assert_eq!(json["payload"]["provider"], "microsoft");
        assert_eq!(serde_json::from_value::<MailboxEvent>(json)?, event);
        Ok(())
    }

    #[test]
    fn a_failing_mailbox_says_who_found_it() -> anyhow::Result<()> {
        let event = MailboxEvent::Failing {
            mailbox_id: Uuid::nil(),
            reason: "auth: 535 5.7.8 authentication failed".into(),
            found_by: FoundBy::Inbox,
        };
        let json = serde_json::to_value(&event)?;
        assert_eq!(json["type"], "failing");
        assert_eq!(json["payload"]["found_by"], "inbox");
        assert_eq!(json["payload"]["mailbox_id"], Uuid::nil().to_string());
        assert_eq!(serde_json::from_value::<MailboxEvent>(json)?, event);
        Ok(())
    }
}
