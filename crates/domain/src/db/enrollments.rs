//! Enrollments: a contact's progress through a sequence. The scheduler owns their state; the
//! API creates them and applies the pause/resume/stop a user asks for.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::enrollments;

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
