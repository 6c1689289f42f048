//! Aggregated statistics, maintained by triggers (migration 000021) so reading them costs a
//! few rows whatever the number of events.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{sequence_stats, step_stats, steps};

#[derive(Debug, Clone, Default, Queryable, Selectable)]
#[diesel(table_name = sequence_stats)]
pub struct SequenceCounts {
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

#[derive(Debug, Clone, Default, Queryable, Selectable)]
#[diesel(table_name = step_stats)]
pub struct StepCounts {
    pub sent: i64,
    pub failed: i64,
    pub bounced: i64,
    pub opened_human: i64,
    pub opened_bot: i64,
    pub clicked_human: i64,
    pub clicked_bot: i64,
    pub replied: i64,
    pub unsubscribed: i64,
    pub complained: i64,
}

/// One step (live or removed, if it has counts) with its counters.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub step_id: Uuid,
    /// The step's ordering key, as the client gave it.
    pub step_order: i32,
    pub subject: String,
    pub removed: bool,
    pub counts: StepCounts,
}

pub async fn for_sequence(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
) -> QueryResult<(SequenceCounts, Vec<StepRow>)> {
    let totals = sequence_stats::table
        .find(sequence_id)
        .select(SequenceCounts::as_select())
        .first(conn)
        .await
        .optional()?
        .unwrap_or_default();
    let rows: Vec<(Uuid, i32, String, bool, Option<StepCounts>)> = steps::table
        .left_join(step_stats::table)
        .filter(steps::sequence_id.eq(sequence_id))
        .filter(
            steps::deleted_at
                .is_null()
                .or(step_stats::step_id.is_not_null()),
        )
        .order((steps::deleted_at.is_not_null(), steps::step_order.asc()))
        .select((
            steps::id,
            steps::order_key,
            steps::subject,
            steps::deleted_at.is_not_null(),
            Option::<StepCounts>::as_select(),
        ))
        .load(conn)
        .await?;
    let steps = rows
        .into_iter()
        .map(|(step_id, step_order, subject, removed, counts)| StepRow {
            step_id,
            step_order,
            subject,
            removed,
            counts: counts.unwrap_or_default(),
        })
        .collect();
    Ok((totals, steps))
}
