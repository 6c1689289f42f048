//! A workspace with mailboxes, an active sequence and enrolled contacts, written straight to
//! a test database (the api is not part of these tests), and what the tests read back.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::db::PgPool;
use domain::kafka::{Envelope, Payload};
use domain::testing::TestDatabase;
use uuid::Uuid;

pub struct World {
    pub db: TestDatabase,
    pub pool: PgPool,
    pub workspace_id: Uuid,
    pub sequence_id: Uuid,
    pub steps: Vec<Uuid>,
    pub mailboxes: Vec<Uuid>,
}

/// Wait before a step: days, hours, minutes.
pub type Wait = (i32, i32, i32);

impl World {
    /// `mailboxes` mailboxes of `daily_limit` without spacing, in the rotation of one active
    /// sequence sending 09:00-17:00 UTC every day, with a step per wait.
    pub async fn new(mailboxes: usize, daily_limit: i32, steps: &[Wait]) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let pool = db.pool()?;
        let mut conn = db.connect().await?;
        let workspace_id = Uuid::now_v7();
        diesel::sql_query("INSERT INTO workspaces (id, name) VALUES ($1, 'test')")
            .bind::<SqlUuid, _>(workspace_id)
            .execute(&mut conn)
            .await?;
        let sequence_id = Uuid::now_v7();
        diesel::sql_query(
            "INSERT INTO sequences (id, workspace_id, name, status, send_days, window_start, \
                                    window_end, timezone, use_contact_timezone) \
             VALUES ($1, $2, 'test', 'active', '{1,2,3,4,5,6,7}', '09:00', '17:00', 'UTC', false)",
        )
        .bind::<SqlUuid, _>(sequence_id)
        .bind::<SqlUuid, _>(workspace_id)
        .execute(&mut conn)
        .await?;
        let mut step_ids = Vec::new();
        for (index, (days, hours, minutes)) in steps.iter().enumerate() {
            let id = Uuid::now_v7();
            diesel::sql_query(
                "INSERT INTO steps (id, sequence_id, step_order, order_key, subject, content, \
                                    wait_days, wait_hours, wait_minutes) \
                 VALUES ($1, $2, $3, $3, 'Subject', 'Hello {{first_name}}', $4, $5, $6)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<SqlUuid, _>(sequence_id)
            .bind::<Integer, _>(i32::try_from(index)? + 1)
            .bind::<Integer, _>(*days)
            .bind::<Integer, _>(*hours)
            .bind::<Integer, _>(*minutes)
            .execute(&mut conn)
            .await?;
            step_ids.push(id);
        }
        let mut mailbox_ids = Vec::new();
        for _ in 0..mailboxes {
            let id = Uuid::now_v7();
            diesel::sql_query(
                "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port, \
                                        daily_limit, min_interval_seconds, max_jitter_seconds) \
                 VALUES ($1, $2, $3, 'smtp.test', 25, $4, 0, 0)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<SqlUuid, _>(workspace_id)
            .bind::<Text, _>(format!("sender-{id}@example.com"))
            .bind::<Integer, _>(daily_limit)
            .execute(&mut conn)
            .await?;
            diesel::sql_query(
                "INSERT INTO sequence_mailboxes (sequence_id, mailbox_id) VALUES ($1, $2)",
            )
            .bind::<SqlUuid, _>(sequence_id)
            .bind::<SqlUuid, _>(id)
            .execute(&mut conn)
            .await?;
            mailbox_ids.push(id);
        }
        Ok(Self {
            db,
            pool,
            workspace_id,
            sequence_id,
            steps: step_ids,
            mailboxes: mailbox_ids,
        })
    }

    pub async fn conn(&self) -> anyhow::Result<AsyncPgConnection> {
        self.db.connect().await
    }

    /// Enrolls `n` new contacts at step 1, due at `due`; returns the enrollment ids.
    pub async fn enroll(&self, n: i64, due: DateTime<Utc>) -> anyhow::Result<Vec<Uuid>> {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let tag = Uuid::now_v7().simple().to_string();
        let ids: Vec<Id> = diesel::sql_query(
            "WITH c AS ( \
                INSERT INTO contacts (id, workspace_id, email) \
                SELECT gen_random_uuid(), $1, 'c' || g || '-' || $3 || '@example.com' \
                  FROM generate_series(1, $2) g RETURNING id) \
             INSERT INTO enrollments (id, workspace_id, sequence_id, contact_id, current_step, \
                                      next_send_at) \
             SELECT gen_random_uuid(), $1, $4, c.id, 1, $5 FROM c RETURNING id",
        )
        .bind::<SqlUuid, _>(self.workspace_id)
        .bind::<BigInt, _>(n)
        .bind::<Text, _>(tag)
        .bind::<SqlUuid, _>(self.sequence_id)
        .bind::<Timestamptz, _>(due)
        .load(&mut self.conn().await?)
        .await?;
        Ok(ids.into_iter().map(|i| i.id).collect())
    }

    /// Marks `messages` sent at `at` as the sender worker does, in the transaction that
    /// announces their `sent` (the scheduler applying that event does not write them).
    pub async fn sent_by_worker(&self, messages: &[Uuid], at: DateTime<Utc>) -> anyhow::Result<()> {
        let marked = diesel::sql_query(
            "UPDATE messages SET status = 'sent', sent_at = $2, lease_expires_at = NULL \
              WHERE id = ANY($1)",
        )
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(messages)
        .bind::<Timestamptz, _>(at)
        .execute(&mut self.conn().await?)
        .await?;
        anyhow::ensure!(
            marked == messages.len(),
            "{marked} of {} messages marked",
            messages.len()
        );
        Ok(())
    }

    pub async fn exec(&self, sql: &str) -> anyhow::Result<usize> {
        self.db.exec(sql).await
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.count(sql).await
    }

    /// The records waiting in the outbox for `topic`, in publishing order, as a consumer
    /// would read them: their keys and envelopes.
    pub async fn outbox_records<P: Payload>(
        &self,
        topic: &str,
    ) -> anyhow::Result<Vec<(String, Envelope<P>)>> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            message_key: String,
            #[diesel(sql_type = Jsonb)]
            payload: serde_json::Value,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT message_key, payload FROM outbox WHERE topic = $1 ORDER BY id",
        )
        .bind::<Text, _>(topic)
        .load(&mut self.conn().await?)
        .await?;
        rows.into_iter()
            .map(|r| {
                let bytes = serde_json::to_vec(&r.payload)?;
                Ok((r.message_key, Envelope::from_json(&bytes)?))
            })
            .collect()
    }

    pub async fn enrollment(&self, id: Uuid) -> anyhow::Result<EnrollmentRow> {
        Ok(diesel::sql_query(
            "SELECT status, current_step, next_send_at, mailbox_id, stop_reason \
               FROM enrollments WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
        .get_result(&mut self.conn().await?)
        .await?)
    }

    pub async fn messages_of(&self, enrollment_id: Uuid) -> anyhow::Result<Vec<MessageRow>> {
        Ok(diesel::sql_query(
            "SELECT id, mailbox_id, step_order, status, attempts, message_id_header \
               FROM messages WHERE enrollment_id = $1 ORDER BY step_order",
        )
        .bind::<SqlUuid, _>(enrollment_id)
        .load(&mut self.conn().await?)
        .await?)
    }

    pub async fn reserved(&self, mailbox_id: Uuid, day: NaiveDate) -> anyhow::Result<i64> {
        self.count(&format!(
            "SELECT coalesce(sum(reserved), 0)::int8 AS n FROM mailbox_daily_usage \
              WHERE mailbox_id = '{mailbox_id}' AND day = '{day}'"
        ))
        .await
    }
}

#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct EnrollmentRow {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub current_step: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_send_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub mailbox_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct MessageRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = Integer)]
    pub step_order: i32,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id_header: Option<String>,
}

pub fn at(rfc3339: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(rfc3339.parse()?)
}
