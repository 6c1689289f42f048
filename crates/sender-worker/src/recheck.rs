//! Automatic re-checks of mailboxes in `error`. A server that refused the login or the
//! sender (or a failed verify, or an IMAP host the guard refuses) puts a mailbox in `error`;
//! a password changed back or a server fixed should not need a person to notice. Every
//! `reaper_interval_ms` each worker claims the mailboxes whose re-check is due
//! (`domain::db::mailbox_health`), runs the API's verify check on them
//! (`domain::mail::mailbox_check`: SMTP and IMAP through the outbound guard, passwords
//! decrypted in memory only) outside any transaction, and records the result: `active` again
//! with a `MailboxEvent::Recovered` on `mailbox-events` (through the outbox, in the same
//! transaction), or still `error` with the next re-check one doubled wait later
//! (`mailbox_recheck_initial_seconds` up to `mailbox_recheck_max_seconds`).

use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncConnection as _;
use domain::clock::Clock;
use domain::crypto::SecretCipher;
use domain::db::PgPool;
use domain::db::mailbox_health::{self, Recheck, Recorded};
use domain::db::mailboxes::Mailbox;
use domain::db::outbox::{self, NewOutboxRecord};
use domain::events::MailboxEvent;
use domain::kafka::Envelope;
use domain::mail::{self, mailbox_check};
use domain::oauth::{AccessError, AccessTokens};
use domain::outbound::OutboundGuard;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Mailboxes checked per round (at the same time): a round stays short, the rest wait for
/// the next.
const PER_ROUND: i64 = 20;

#[derive(Clone)]
pub struct Rechecker {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub guard: OutboundGuard,
    pub cipher: Arc<SecretCipher>,
    /// The access tokens of mailboxes connected with OAuth.
    pub tokens: AccessTokens,
    /// The `mailbox-events` topic.
    pub topic: String,
    pub initial: Duration,
    pub max: Duration,
    /// Each server's check, as verify's.
    pub timeout: Duration,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub recovered: usize,
    pub still_failing: usize,
    /// Changed by a person while being checked: their change stands.
    pub superseded: usize,
}

impl Rechecker {
    pub fn new(
        pool: PgPool,
        clock: Arc<dyn Clock>,
        guard: OutboundGuard,
        cipher: Arc<SecretCipher>,
        tokens: AccessTokens,
        topic: String,
        settings: &domain::config::WorkerServiceConfig,
    ) -> Self {
        Self {
            pool,
            clock,
            guard,
            cipher,
            tokens,
            topic,
            initial: Duration::from_secs(settings.mailbox_recheck_initial_seconds),
            max: Duration::from_secs(settings.mailbox_recheck_max_seconds),
            timeout: mail::CHECK_TIMEOUT,
        }
    }

    /// Every `interval` until `shutdown`, rounds until one finds nothing more due.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            loop {
                match self.run_once().await {
                    Ok(round) if round == Round::default() => break,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "mailbox re-check round failed"
                        );
                        break;
                    }
                }
            }
        }
    }

    /// One round: schedule mailboxes that just entered `error`, claim the due ones, check
    /// them, record the outcomes.
    pub async fn run_once(&self) -> anyhow::Result<Round> {
        let claimed = {
            let mut conn = self.pool.get().await?;
            let now = self.clock.now();
            mailbox_health::schedule_rechecks(&mut conn, now, self.initial).await?;
            let (initial, max) = (self.initial, self.max);
            conn.transaction(async |tx| {
                mailbox_health::claim_rechecks(tx, now, initial, max, PER_ROUND).await
            })
            .await?
        };
        let mut checks = JoinSet::new();
        for mailbox in claimed {
            let this = self.clone();
            checks.spawn(async move {
                let outcome = this.check(&mailbox).await;
                (mailbox, outcome)
            });
        }
        let mut round = Round::default();
        while let Some(joined) = checks.join_next().await {
            let (mailbox, outcome) = joined?;
            match self.record(&mailbox, &outcome).await? {
                Recorded::Recovered => {
                    round.recovered += 1;
                    tracing::info!(mailbox.id = %mailbox.id, failed_checks = mailbox.check_failures,
                                   "mailbox passed its re-check and is active again");
                }
                Recorded::StillFailing {
                    failures,
                    next_check_at,
                } => {
                    round.still_failing += 1;
                    tracing::info!(mailbox.id = %mailbox.id, failures, %next_check_at,
                                   "mailbox still fails its re-check");
                }
                Recorded::Superseded => round.superseded += 1,
            }
        }
        for (outcome, count) in [
            ("recovered", round.recovered),
            ("failed", round.still_failing),
            ("superseded", round.superseded),
        ] {
            metrics::counter!("mailbox_rechecks_total", "outcome" => outcome)
                .increment(count as u64);
        }
        Ok(round)
    }

    async fn check(&self, mailbox: &Mailbox) -> Recheck {
        let token = match self.tokens.current(mailbox.id).await {
            Ok(token) => Some(token),
            Err(AccessError::NotConnected) => None,
            // `reconnect_required` now, if the grant is gone: not ours to re-check any more.
            Err(error) => return Recheck::Failed(error.to_string()),
        };
        match mailbox_check::check_mailbox(
            &self.guard,
            Some(&self.cipher),
            mailbox,
            token.as_ref(),
            self.timeout,
        )
        .await
        {
            Ok(check) => match check.failure() {
                None => Recheck::Passed,
                Some(reason) => Recheck::Failed(reason),
            },
            // Nothing a later re-check could fix alone, but a person may (a key restored):
            // keep checking at the longest wait's pace.
            Err(error) => Recheck::Failed(error.to_string()),
        }
    }

    async fn record(&self, mailbox: &Mailbox, outcome: &Recheck) -> anyhow::Result<Recorded> {
        let mut conn = self.pool.get().await?;
        let now = self.clock.now();
        let (initial, max) = (self.initial, self.max);
        let recovered = MailboxEvent::Recovered {
            mailbox_id: mailbox.id,
            failed_checks: u32::try_from(mailbox.check_failures).unwrap_or(0),
        };
        let mut envelope = Envelope::new(mailbox.workspace_id, recovered);
        envelope.occurred_at = now;
        let record =
            NewOutboxRecord::from_envelope(&self.topic, mailbox.id.to_string(), &envelope)?;
        let recorded = conn
            .transaction(async |tx| -> anyhow::Result<Recorded> {
                let recorded =
                    mailbox_health::record_recheck(tx, mailbox, outcome, now, initial, max).await?;
                if recorded == Recorded::Recovered {
                    outbox::insert_many(tx, std::slice::from_ref(&record)).await?;
                }
                Ok(recorded)
            })
            .await?;
        Ok(recorded)
    }
}
