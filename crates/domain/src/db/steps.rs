//! Steps of sequences. Removed steps are kept (soft-deleted) as the history their messages
//! and events point at. Among live steps, positions (`step_order`, 1..n, what enrollments and
//! messages refer to) and the client's ordering keys (`order_key`, the API's `step_order`)
//! are unique; the keys' order is the positions' order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{messages, steps};

/// Renumbering goes through this offset: the unique index on positions is checked row by
/// row, so an in-place `+ 1` could collide with the next row mid-statement.
const RENUMBER_OFFSET: i32 = 1_000_000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = steps)]
pub struct Step {
    pub id: Uuid,
    pub sequence_id: Uuid,
    /// Position among the live steps, from 1.
    pub step_order: i32,
    /// The client's ordering key.
    pub order_key: i32,
    pub subject: String,
    pub content: String,
    pub wait_days: i32,
    pub wait_hours: i32,
    pub wait_minutes: i32,
    pub thread_with_previous: bool,
    pub variants: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = steps)]
pub struct NewStep {
    pub id: Uuid,
    pub sequence_id: Uuid,
    pub step_order: i32,
    pub order_key: i32,
    pub subject: String,
    pub content: String,
    pub wait_days: i32,
    pub wait_hours: i32,
    pub wait_minutes: i32,
    pub thread_with_previous: bool,
    pub variants: serde_json::Value,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = steps)]
pub struct StepChanges {
    pub order_key: Option<i32>,
    pub subject: Option<String>,
    pub content: Option<String>,
    pub wait_days: Option<i32>,
    pub wait_hours: Option<i32>,
    pub wait_minutes: Option<i32>,
    pub thread_with_previous: Option<bool>,
    pub variants: Option<serde_json::Value>,
}

pub async fn insert_many(conn: &mut AsyncPgConnection, new: &[NewStep]) -> QueryResult<Vec<Step>> {
    diesel::insert_into(steps::table)
        .values(new)
        .returning(Step::as_returning())
        .get_results(conn)
        .await
}

/// Live steps of the given sequences, by sequence then position.
pub async fn live_for(
    conn: &mut AsyncPgConnection,
    sequence_ids: &[Uuid],
) -> QueryResult<Vec<Step>> {
    steps::table
        .filter(steps::sequence_id.eq_any(sequence_ids))
        .filter(steps::deleted_at.is_null())
        .order((steps::sequence_id.asc(), steps::step_order.asc()))
        .select(Step::as_select())
        .load(conn)
        .await
}

pub async fn find_live(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Step>> {
    steps::table
        .filter(steps::sequence_id.eq(sequence_id))
        .filter(steps::id.eq(id))
        .filter(steps::deleted_at.is_null())
        .select(Step::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &StepChanges,
) -> QueryResult<Step> {
    diesel::update(steps::table.find(id))
        .set(changes)
        .returning(Step::as_returning())
        .get_result(conn)
        .await
}

/// Moves live steps at positions `>= from` by `delta` (+1 or -1).
pub async fn shift_positions(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    from: i32,
    delta: i32,
) -> QueryResult<()> {
    let live = steps::table
        .filter(steps::sequence_id.eq(sequence_id))
        .filter(steps::deleted_at.is_null());
    diesel::update(live.filter(steps::step_order.ge(from)))
        .set(steps::step_order.eq(steps::step_order + RENUMBER_OFFSET))
        .execute(conn)
        .await?;
    diesel::update(live.filter(steps::step_order.ge(RENUMBER_OFFSET)))
        .set(steps::step_order.eq(steps::step_order - RENUMBER_OFFSET + delta))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Removes a step from the live sequence. Steps that were never emailed are deleted
/// outright; others are kept as history.
pub async fn remove(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    let emailed: bool = diesel::select(diesel::dsl::exists(
        messages::table.filter(messages::step_id.eq(id)),
    ))
    .get_result(conn)
    .await?;
    if emailed {
        diesel::update(steps::table.find(id))
            .set(steps::deleted_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
    } else {
        diesel::delete(steps::table.find(id)).execute(conn).await?;
    }
    Ok(())
}

/// Sets one step's position directly (only used when nothing is enrolled).
pub async fn set_position(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    step_order: i32,
) -> QueryResult<()> {
    diesel::update(steps::table.find(id))
        .set(steps::step_order.eq(step_order))
        .execute(conn)
        .await
        .map(|_| ())
}
