//! `GET /sequences/{id}/stats`: per step and in total, from aggregates kept by triggers.

use domain::db::stats::{SequenceCounts, StepCounts};
use paperclip::actix::{Apiv2Schema, api_v2_operation, web};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sequences/{id}/stats").route(web::get().to(get)));
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct SequenceStats {
    pub sequence_id: Uuid,
    /// Contacts ever enrolled, and where they are now.
    pub enrollments: EnrollmentCounts,
    pub totals: Counts,
    pub steps: Vec<StepStats>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct EnrollmentCounts {
    pub enrolled: i64,
    pub active: i64,
    pub paused: i64,
    pub completed: i64,
    pub replied: i64,
    pub bounced: i64,
    pub unsubscribed: i64,
    pub stopped: i64,
    pub failed: i64,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct StepStats {
    pub step_id: Uuid,
    pub step_order: i32,
    pub subject: String,
    /// True for a step removed from the sequence after it was sent.
    pub removed: bool,
    pub counts: Counts,
}

/// Each outcome once per email; opens and clicks once per email for people and once for bots
/// (mail-privacy proxies, link scanners), which are counted apart and left out of the rates.
#[derive(Debug, Default, Serialize, Apiv2Schema)]
pub struct Counts {
    pub sent: i64,
    pub failed: i64,
    pub bounced: i64,
    pub opened: HumanBot,
    pub clicked: HumanBot,
    pub replied: i64,
    pub unsubscribed: i64,
    pub complained: i64,
    pub rates: Rates,
}

#[derive(Debug, Default, Serialize, Apiv2Schema)]
pub struct HumanBot {
    pub human: i64,
    pub bot: i64,
}

/// Fractions of emails sent (0 to 1, four decimals).
#[derive(Debug, Default, Serialize, Apiv2Schema)]
pub struct Rates {
    pub open_rate: f64,
    pub click_rate: f64,
    pub reply_rate: f64,
    pub bounce_rate: f64,
    pub unsubscribe_rate: f64,
}

impl Counts {
    fn from_step(c: &StepCounts) -> Self {
        let mut counts = Self {
            sent: c.sent,
            failed: c.failed,
            bounced: c.bounced,
            opened: HumanBot {
                human: c.opened_human,
                bot: c.opened_bot,
            },
            clicked: HumanBot {
                human: c.clicked_human,
                bot: c.clicked_bot,
            },
            replied: c.replied,
            unsubscribed: c.unsubscribed,
            complained: c.complained,
            rates: Rates::default(),
        };
        counts.compute_rates();
        counts
    }

    fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.bounced += other.bounced;
        self.opened.human += other.opened.human;
        self.opened.bot += other.opened.bot;
        self.clicked.human += other.clicked.human;
        self.clicked.bot += other.clicked.bot;
        self.replied += other.replied;
        self.unsubscribed += other.unsubscribed;
        self.complained += other.complained;
    }

    fn compute_rates(&mut self) {
        let rate = |n: i64| {
            if self.sent == 0 {
                0.0
            } else {
                (n as f64 / self.sent as f64 * 10_000.0).round() / 10_000.0
            }
        };
        self.rates = Rates {
            open_rate: rate(self.opened.human),
            click_rate: rate(self.clicked.human),
            reply_rate: rate(self.replied),
            bounce_rate: rate(self.bounced),
            unsubscribe_rate: rate(self.unsubscribed),
        };
    }
}

impl From<SequenceCounts> for EnrollmentCounts {
    fn from(c: SequenceCounts) -> Self {
        Self {
            enrolled: c.enrolled,
            active: c.active,
            paused: c.paused,
            completed: c.completed,
            replied: c.replied,
            bounced: c.bounced,
            unsubscribed: c.unsubscribed,
            stopped: c.stopped,
            failed: c.failed,
        }
    }
}

/// Sequence statistics
///
/// Per step and in total: sent, failed, bounced, opened and clicked (unique per email, people
/// and bots apart), replied, unsubscribed, complained, with rates over emails sent; and the
/// enrollments by status. Served from aggregates, so as fast at millions of events as at ten.
#[api_v2_operation(tags(Stats))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<SequenceStats>, ApiError> {
    let mut conn = state.pool.get().await?;
    let sequence_id = id.into_inner();
    super::sequences::owned(&mut conn, caller.workspace_id, sequence_id).await?;
    let (enrollments, rows) = domain::db::stats::for_sequence(&mut conn, sequence_id).await?;
    let mut totals = Counts::default();
    let steps: Vec<StepStats> = rows
        .into_iter()
        .map(|row| {
            let counts = Counts::from_step(&row.counts);
            totals.add(&counts);
            StepStats {
                step_id: row.step_id,
                step_order: row.step_order,
                subject: row.subject,
                removed: row.removed,
                counts,
            }
        })
        .collect();
    totals.compute_rates();
    Ok(web::Json(SequenceStats {
        sequence_id,
        enrollments: enrollments.into(),
        totals,
        steps,
    }))
}
