//! Rows the API under test has no endpoint for yet (or that only the scheduler writes),
//! inserted directly.

use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

pub async fn mailbox(conn: &mut AsyncPgConnection, workspace_id: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port) \
         VALUES ($1, $2::uuid, $3, 'smtp.test', 25)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(workspace_id)
    .bind::<Text, _>(format!("sender-{id}@example.com"))
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn contact(
    conn: &mut AsyncPgConnection,
    workspace_id: &str,
    email: &str,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query("INSERT INTO contacts (id, workspace_id, email) VALUES ($1, $2::uuid, $3)")
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(workspace_id)
        .bind::<Text, _>(email)
        .execute(conn)
        .await?;
    Ok(id)
}

pub async fn enrollment(
    conn: &mut AsyncPgConnection,
    workspace_id: &str,
    sequence_id: &str,
    contact_id: Uuid,
    current_step: i32,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step) \
         VALUES ($1, $2::uuid, $3::uuid, $4, $5)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(workspace_id)
    .bind::<Text, _>(sequence_id)
    .bind::<SqlUuid, _>(contact_id)
    .bind::<Integer, _>(current_step)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn current_step(
    conn: &mut AsyncPgConnection,
    enrollment_id: Uuid,
) -> anyhow::Result<i32> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        current_step: i32,
    }
    let row: Row = diesel::sql_query("SELECT current_step FROM enrollments WHERE id = $1")
        .bind::<SqlUuid, _>(enrollment_id)
        .get_result(conn)
        .await?;
    Ok(row.current_step)
}

/// A sent message of `step_id` for the enrollment (as the scheduler and worker would leave it).
pub async fn sent_message(
    conn: &mut AsyncPgConnection,
    workspace_id: &str,
    enrollment_id: Uuid,
    contact_id: Uuid,
    mailbox_id: Uuid,
    step_id: &str,
) -> anyhow::Result<Uuid> {
    message(
        conn,
        workspace_id,
        (enrollment_id, contact_id, mailbox_id),
        step_id,
        "sent",
    )
    .await
}

/// A message of `step_id` for the enrollment (its contact and mailbox given with it) in
/// `status`, after its first attempt, with its Message-ID `<id@example.com>`.
pub async fn message(
    conn: &mut AsyncPgConnection,
    workspace_id: &str,
    (enrollment_id, contact_id, mailbox_id): (Uuid, Uuid, Uuid),
    step_id: &str,
    status: &str,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, contact_id, \
             mailbox_id, status, attempts, message_id_header, scheduled_at, sent_at) \
         SELECT $1, $2::uuid, $3, s.id, s.step_order, $4, $5, $7, 1, '<' || $1 || '@example.com>', \
                now(), CASE WHEN $7 = 'sent' THEN now() END \
           FROM steps s WHERE s.id = $6::uuid",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(workspace_id)
    .bind::<SqlUuid, _>(enrollment_id)
    .bind::<SqlUuid, _>(contact_id)
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(step_id)
    .bind::<Text, _>(status)
    .execute(conn)
    .await?;
    Ok(id)
}

/// An event as the scheduler's consumer records it.
pub async fn event(
    conn: &mut AsyncPgConnection,
    workspace_id: &str,
    enrollment_id: Uuid,
    message_id: Uuid,
    event_type: &str,
    is_bot: Option<bool>,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO events (id, workspace_id, message_id, enrollment_id, event_type, occurred_at, is_bot) \
         VALUES ($1, $2::uuid, $3, $4, $5, now(), $6)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(workspace_id)
    .bind::<SqlUuid, _>(message_id)
    .bind::<SqlUuid, _>(enrollment_id)
    .bind::<Text, _>(event_type)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Bool>, _>(is_bot)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn set_enrollment_status(
    conn: &mut AsyncPgConnection,
    enrollment_id: Uuid,
    status: &str,
) -> anyhow::Result<()> {
    diesel::sql_query("UPDATE enrollments SET status = $2 WHERE id = $1")
        .bind::<SqlUuid, _>(enrollment_id)
        .bind::<Text, _>(status)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn suppression(
    conn: &mut AsyncPgConnection,
    workspace_id: &str,
    entry: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(
        "INSERT INTO suppressions (id, workspace_id, email, reason) VALUES ($1, $2::uuid, $3, 'manual')",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(workspace_id)
    .bind::<Text, _>(entry)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_contact_status(
    conn: &mut AsyncPgConnection,
    email: &str,
    status: &str,
) -> anyhow::Result<()> {
    diesel::sql_query("UPDATE contacts SET status = $2 WHERE email = $1")
        .bind::<Text, _>(email)
        .bind::<Text, _>(status)
        .execute(conn)
        .await?;
    Ok(())
}
