//! The `messages` table's own guarantees: a Message-ID names its message's id (what makes
//! it unique without an index, and what the inbox watcher looks replies up by), and only a
//! `retrying` message has a `retry_at` (what the retry queue's index holds).

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
use domain::testing::TestDatabase;
use uuid::Uuid;

async fn insert_message(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    header: &str,
) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(
        "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, \
                               contact_id, mailbox_id, message_id_header, scheduled_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, now())",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(header)
    .execute(conn)
    .await
}

#[tokio::test]
async fn a_message_id_header_must_name_its_message() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let first = Uuid::now_v7();
    assert_eq!(
        insert_message(&mut conn, first, &format!("<{first}@example.com>")).await?,
        1
    );

    // Another message cannot take the first one's header, nor any header not its own.
    let second = Uuid::now_v7();
    for header in [
        format!("<{first}@example.com>"),
        "<m1@example.com>".to_owned(),
        format!("{second}@example.com"),
    ] {
        let refused = insert_message(&mut conn, second, &header).await;
        let Err(diesel::result::Error::DatabaseError(kind, info)) = refused else {
            anyhow::bail!("{header} was accepted for message {second}: {refused:?}");
        };
        assert!(
            matches!(kind, diesel::result::DatabaseErrorKind::CheckViolation),
            "{header}: {kind:?} {}",
            info.message()
        );
        assert_eq!(
            info.constraint_name(),
            Some("messages_message_id_header_names_id")
        );
    }
    assert_eq!(
        insert_message(&mut conn, second, &format!("<{second}@Example.COM>")).await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn only_a_retrying_message_has_a_retry_time() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let id = Uuid::now_v7();
    insert_message(&mut conn, id, &format!("<{id}@example.com>")).await?;
    let set = |status: &'static str| {
        format!(
            "UPDATE messages SET status = '{status}', retry_at = now() + interval '1 minute' \
              WHERE id = '{id}'"
        )
    };
    assert_eq!(db.exec(&set("retrying")).await?, 1);
    for status in ["queued", "sending", "sent", "failed"] {
        let refused = db.exec(&set(status)).await;
        let message = format!("{:#}", refused.err().unwrap_or_else(|| anyhow::anyhow!("")));
        assert!(
            message.contains("messages_retry_at_only_retrying"),
            "{status} with a retry time: {message}"
        );
    }
    // Leaving `retrying` clears it, as every path does.
    assert_eq!(
        db.exec(&format!(
            "UPDATE messages SET status = 'queued', retry_at = NULL WHERE id = '{id}'"
        ))
        .await?,
        1
    );
    Ok(())
}
