//! Enrollments: a contact's progress through a sequence. The scheduler owns their state; the
//! API creates them and applies the pause/resume/stop a user asks for.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{contacts, enrollments};

/// Keeps each unfinished enrollment pointed at the same next step when the steps at
/// positions `>= from` move by `delta`. An enrollment whose next position is exactly `from`
/// counts as "at or past" it, so a step inserted there is not sent to it.
pub async fn shift_positions(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    from: i32,
    delta: i32,
) -> QueryResult<usize> {
    diesel::update(
        enrollments::table
            .filter(enrollments::sequence_id.eq(sequence_id))
            .filter(enrollments::status.eq_any(["active", "paused"]))
            .filter(enrollments::current_step.ge(from)),
    )
    .set(enrollments::current_step.eq(enrollments::current_step + delta))
    .execute(conn)
    .await
}

/// An enrollment as the API lists it, with its contact's address (select it from
/// `enrollments` joined with `contacts`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = enrollments)]
pub struct EnrollmentView {
    pub id: Uuid,
    pub sequence_id: Uuid,
    pub contact_id: Uuid,
    #[diesel(select_expression = contacts::email)]
    #[diesel(select_expression_type = contacts::email)]
    pub email: String,
    pub mailbox_id: Option<Uuid>,
    pub current_step: i32,
    pub next_send_at: Option<DateTime<Utc>>,
    pub status: String,
    pub stop_reason: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const STATUSES: [&str; 8] = [
    "active",
    "paused",
    "completed",
    "replied",
    "bounced",
    "unsubscribed",
    "stopped",
    "failed",
];

pub async fn list_for_sequence(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    status: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<EnrollmentView>> {
    let mut query = enrollments::table
        .inner_join(contacts::table)
        .filter(enrollments::sequence_id.eq(sequence_id))
        .select(EnrollmentView::as_select())
        .order(enrollments::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(enrollments::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(enrollments::id.gt(after));
    }
    query.load(conn).await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<EnrollmentView>> {
    enrollments::table
        .inner_join(contacts::table)
        .filter(enrollments::workspace_id.eq(workspace_id))
        .filter(enrollments::id.eq(id))
        .select(EnrollmentView::as_select())
        .first(conn)
        .await
        .optional()
}

/// Moves an enrollment to `to` if it is in one of `from`; false otherwise (a concurrent
/// change won, or the transition is not allowed). Becoming `active` makes an enrollment
/// that has no send time (its step was in flight or held when it paused) due now; its step's
/// message, if it was cancelled or held, is queued again by the next dispatch.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
) -> QueryResult<bool> {
    let target = enrollments::table
        .filter(enrollments::workspace_id.eq(workspace_id))
        .filter(enrollments::id.eq(id))
        .filter(enrollments::status.eq_any(from));
    let changed = if to == "active" {
        diesel::update(target)
            .set((
                enrollments::status.eq(to),
                enrollments::stop_reason.eq(reason),
                enrollments::next_send_at.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                >("coalesce(next_send_at, now())")),
            ))
            .execute(conn)
            .await?
    } else {
        diesel::update(target)
            .set((
                enrollments::status.eq(to),
                enrollments::stop_reason.eq(reason),
            ))
            .execute(conn)
            .await?
    };
    Ok(changed == 1)
}

/// Enrolls the contacts in one statement; those already in the sequence are left alone.
/// Returns the contact ids actually enrolled.
///
/// The caller must hold the sequence's row lock ([`super::sequences::lock`], which every
/// enrolling transaction takes) and give each contact once: then a plain `NOT EXISTS` sees
/// every enrollment that could conflict, which is cheaper per row than `ON CONFLICT`. Without
/// the lock a concurrent enrollment of the same contact fails on the unique constraint (never
/// a duplicate).
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    sequence_id: Uuid,
    contact_ids: &[Uuid],
    first_step: i32,
    next_send_at: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Enrolled {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        contact_id: Uuid,
    }
    if contact_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = contact_ids.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<Enrolled> = diesel::sql_query(
        "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, next_send_at) \
         SELECT t.id, $1, $2, t.contact_id, $5, $6 \
           FROM UNNEST($3::uuid[], $4::uuid[]) AS t(id, contact_id) \
          WHERE NOT EXISTS (SELECT 1 FROM enrollments e \
                             WHERE e.sequence_id = $2 AND e.contact_id = t.contact_id) \
         RETURNING contact_id",
    )
    .bind::<diesel::sql_types::Uuid, _>(workspace_id)
    .bind::<diesel::sql_types::Uuid, _>(sequence_id)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(contact_ids)
    .bind::<diesel::sql_types::Integer, _>(first_step)
    .bind::<diesel::sql_types::Timestamptz, _>(next_send_at)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.contact_id).collect())
}
