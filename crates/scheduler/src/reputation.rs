//! The reputation guard: a mailbox whose recipients bounce or complain too often is paused
//! before its domain's reputation suffers further. Judged where those outcomes arrive, in
//! the transaction of the `email-events` consumer that applies a hard `bounced` or a
//! `complained` event: the mailbox of the event's message goes over its latest sends
//! (`domain::db::mailbox_health::reputation`), and when
//!
//! - its hard bounces among the latest 50 sends / max(those sends, 50) exceed its
//!   `max_bounce_rate`, or
//! - its spam complaints among the latest 200 sends / max(those sends, 200) exceed its
//!   `max_complaint_rate`,
//!
//! an `active` mailbox becomes `paused` with the reason in `status_reason` (e.g. `bounce
//! rate 4/50 over 5%`) and a `MailboxEvent::Paused` on `mailbox-events` (through the outbox,
//! in the same transaction). Dividing by at least the window's size protects a new mailbox
//! without letting its first bounce pause it: 3 hard bounces in its first 3 sends are 3/50,
//! over the default 5 %. Its messages wait (see `crate::retries`); a person resumes it by
//! setting its status to `active`.

use diesel_async::AsyncPgConnection;
use domain::db::mailbox_health::{self, BOUNCE_WINDOW, COMPLAINT_WINDOW, Reputation};
use domain::db::mailboxes::status;
use domain::db::outbox::{self, NewOutboxRecord};
use domain::events::{EmailEvent, MailboxEvent, PauseCause};
use domain::kafka::Envelope;

/// Why a mailbox should be paused.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub cause: PauseCause,
    pub bad: u32,
    pub out_of: u32,
    pub threshold: f64,
    pub reason: String,
}

/// The first rate of `reputation` over its threshold, bounces first; `None` when both are
/// within.
pub fn judge(reputation: &Reputation) -> Option<Verdict> {
    [
        (
            PauseCause::BounceRate,
            reputation.bounces,
            reputation.bounce_sends,
            BOUNCE_WINDOW,
            reputation.max_bounce_rate,
        ),
        (
            PauseCause::ComplaintRate,
            reputation.complaints,
            reputation.complaint_sends,
            COMPLAINT_WINDOW,
            reputation.max_complaint_rate,
        ),
    ]
    .into_iter()
    .find_map(|(cause, bad, sends, window, threshold)| {
        let out_of = sends.max(window);
        let over = bad > 0 && (bad as f64) / (out_of as f64) > threshold;
        over.then(|| {
            let bad = u32::try_from(bad).unwrap_or(u32::MAX);
            let out_of = u32::try_from(out_of).unwrap_or(u32::MAX);
            Verdict {
                cause,
                bad,
                out_of,
                threshold,
                reason: describe(cause, bad, out_of, threshold),
            }
        })
    })
}

/// `bounce rate 4/50 over 5%`, `complaint rate 1/200 over 0.3%`.
pub fn describe(cause: PauseCause, bad: u32, out_of: u32, threshold: f64) -> String {
    let what = match cause {
        PauseCause::BounceRate => "bounce rate",
        PauseCause::ComplaintRate => "complaint rate",
    };
    let percent = format!("{:.2}", threshold * 100.0);
    let percent = percent.trim_end_matches('0').trim_end_matches('.');
    format!("{what} {bad}/{out_of} over {percent}%")
}

/// The reputation guard of one scheduler replica.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The `mailbox-events` topic.
    pub topic: String,
}

impl Guard {
    /// Judges the mailbox of `envelope`'s message after a hard bounce or a complaint was
    /// applied (in the caller's transaction); pauses it when it went over a threshold.
    /// Returns what paused it.
    pub async fn review(
        &self,
        tx: &mut AsyncPgConnection,
        envelope: &Envelope<EmailEvent>,
    ) -> Result<Option<PauseCause>, diesel::result::Error> {
        let message = match &envelope.body {
            EmailEvent::Bounced {
                message,
                hard: true,
                ..
            }
            | EmailEvent::Complained { message } => message,
            _ => return Ok(None),
        };
        let Some(mailbox_id) = mailbox_health::mailbox_of_message(tx, message.message_id).await?
        else {
            return Ok(None);
        };
        let Some(reputation) = mailbox_health::reputation(tx, mailbox_id).await? else {
            return Ok(None);
        };
        if reputation.status != status::ACTIVE {
            return Ok(None);
        }
        let Some(verdict) = judge(&reputation) else {
            return Ok(None);
        };
        if !mailbox_health::pause(tx, mailbox_id, &verdict.reason).await? {
            return Ok(None);
        }
        let mut paused = Envelope::new(
            reputation.workspace_id,
            MailboxEvent::Paused {
                mailbox_id,
                reason: verdict.reason.clone(),
                cause: verdict.cause,
                bad: verdict.bad,
                out_of: verdict.out_of,
                threshold: verdict.threshold,
            },
        );
        paused.occurred_at = envelope.occurred_at;
        let record = NewOutboxRecord::from_envelope(&self.topic, mailbox_id.to_string(), &paused)
            .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
        outbox::insert_many(tx, std::slice::from_ref(&record)).await?;
        tracing::warn!(mailbox.id = %mailbox_id, reason = %verdict.reason,
                       "mailbox paused by the reputation guard");
        Ok(Some(verdict.cause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn reputation(
        bounces: i64,
        bounce_sends: i64,
        complaints: i64,
        complaint_sends: i64,
    ) -> Reputation {
        Reputation {
            workspace_id: Uuid::nil(),
            status: status::ACTIVE.to_owned(),
            max_bounce_rate: 0.05,
            max_complaint_rate: 0.003,
            bounce_sends,
            bounces,
            complaint_sends,
            complaints,
        }
    }

    #[test]
    fn a_new_mailbox_is_judged_against_the_whole_window() {
        let verdict = judge(&reputation(3, 3, 0, 3));
        assert_eq!(
            verdict.map(|v| v.reason).as_deref(),
            Some("bounce rate 3/50 over 5%")
        );
        assert_eq!(judge(&reputation(2, 3, 0, 3)), None, "2/50 is 4 %");
    }

    #[test]
    fn the_threshold_itself_is_not_over_it() {
        let mut at_line = reputation(5, 50, 0, 50);
        at_line.max_bounce_rate = 0.1;
        assert_eq!(judge(&at_line), None, "5/50 is exactly 10 %");
        at_line.bounces = 6;
        assert!(judge(&at_line).is_some());
    }

    #[test]
    fn one_complaint_in_200_sends_is_over_gmails_line() {
        let verdict = judge(&reputation(0, 50, 1, 120));
        assert_eq!(
            verdict.map(|v| (v.cause, v.bad, v.out_of, v.reason)),
            Some((
                PauseCause::ComplaintRate,
                1,
                200,
                "complaint rate 1/200 over 0.3%".to_owned()
            ))
        );
    }

    #[test]
    fn a_threshold_of_one_never_pauses_and_zero_pauses_at_the_first() {
        let mut lenient = reputation(50, 50, 200, 200);
        lenient.max_bounce_rate = 1.0;
        lenient.max_complaint_rate = 1.0;
        assert_eq!(judge(&lenient), None);
        let mut strict = reputation(1, 400, 0, 400);
        strict.max_bounce_rate = 0.0;
        assert_eq!(
            judge(&strict).map(|v| v.reason).as_deref(),
            Some("bounce rate 1/400 over 0%")
        );
        assert_eq!(judge(&reputation(0, 0, 0, 0)), None);
    }
}
