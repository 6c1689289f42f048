//! The transactional outbox: Kafka records written in the same transaction as the state they
//! announce, and the queries the relay publishes them with.
//!
//! Rows are selected by `status`, never by "id above the last one published": identity
//! values are handed out at insert time but become visible at commit, so a transaction that
//! commits late makes a smaller id appear after larger ones were already published.
//!
//! `status = 'pending'` is written as a literal in every query, not bound: only then can the
//! planner use the partial index `outbox_pending_idx` in a cached generic plan, rather than
//! scanning every published row the table has accumulated.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::prepared::PreparedExt as _;
use crate::kafka::trace_headers;
use crate::kafka::{Envelope, Payload};

/// One record to publish: where to, its key, the serialised envelope, and the headers to send
/// it with (a JSON object of header name to string value).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRecord {
    pub topic: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub headers: serde_json::Value,
}

impl NewOutboxRecord {
    /// The record of `envelope`, carrying the current trace context in its headers so the
    /// consumer's span continues the trace of the transaction that wrote the row, not the
    /// relay's.
    pub fn from_envelope<P: Payload>(
        topic: impl Into<String>,
        key: impl Into<String>,
        envelope: &Envelope<P>,
    ) -> Result<Self, serde_json::Error> {
        let headers: serde_json::Map<String, serde_json::Value> =
            trace_headers::current_context_pairs()
                .into_iter()
                .map(|(name, value)| (name, serde_json::Value::String(value)))
                .collect();
        Ok(Self {
            topic: topic.into(),
            key: key.into(),
            payload: serde_json::to_value(envelope)?,
            headers: serde_json::Value::Object(headers),
        })
    }
}

/// A claimed row, as the relay needs it.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct OutboxRecord {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_key: Option<String>,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    pub headers: serde_json::Value,
    /// Failed publish attempts so far.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl OutboxRecord {
    /// The stored headers as name and value pairs; anything but a string value is ignored
    /// (only [`NewOutboxRecord`] writes them, always as strings).
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .as_object()
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Inserts every record with one statement and returns their ids (in `records` order).
/// Callers write these in the transaction of the state change they announce.
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    records: &[NewOutboxRecord],
) -> QueryResult<Vec<i64>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    // WITH ORDINALITY plus ORDER BY makes ids follow the slice order, so records of one key
    // written together are published in the order they were given.
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO outbox (topic, message_key, payload, headers) \
         SELECT t.topic, t.message_key, t.payload, t.headers \
           FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::jsonb[]) \
                WITH ORDINALITY AS t(topic, message_key, payload, headers, n) \
          ORDER BY t.n \
         RETURNING id",
    )
    .bind::<Array<Text>, _>(records.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(records.iter().map(|r| &r.payload).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(records.iter().map(|r| &r.headers).collect::<Vec<_>>())
    .prepared()
    .load(conn)
    .await?;
    let mut ids: Vec<i64> = inserted.into_iter().map(|row| row.id).collect();
    // RETURNING does not promise an order; identity values do follow the insert order.
    ids.sort_unstable();
    Ok(ids)
}

/// Locks and returns up to `limit` pending rows, oldest first, skipping rows another relay
/// holds. Call inside a transaction: the locks, and so the claim, end with it.
pub async fn claim_pending(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<OutboxRecord>> {
    diesel::sql_query(
        "SELECT id, topic, message_key, payload, headers, attempts, created_at \
           FROM outbox \
          WHERE status = 'pending' \
          ORDER BY id \
          LIMIT $1 \
            FOR UPDATE SKIP LOCKED",
    )
    .bind::<BigInt, _>(limit)
    .prepared()
    .load(conn)
    .await
}

/// Marks rows published; returns how many changed. Rows already published stay as they are.
pub async fn mark_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE outbox SET status = 'published', published_at = now() \
          WHERE id = ANY($1) AND status = 'pending'",
    )
    .bind::<Array<BigInt>, _>(ids)
    .prepared()
    .execute(conn)
    .await
}

/// Deletes acknowledged rows (the relay's default: nothing is kept once Kafka has a record);
/// returns how many went. Only pending rows are deleted, so a row is never removed unsent.
pub async fn delete_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query("DELETE FROM outbox WHERE id = ANY($1) AND status = 'pending'")
        .bind::<Array<BigInt>, _>(ids)
        .prepared()
        .execute(conn)
        .await
}

/// Deletes up to `limit` rows published before `cutoff` (those kept by
/// `outbox.retention_seconds`, or left by a release that kept every row), oldest first, over
/// the partial index `outbox_published_idx`.
pub async fn purge_published(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM outbox WHERE id IN ( \
             SELECT id FROM outbox \
              WHERE status = 'published' AND published_at < $1 \
              ORDER BY published_at \
              LIMIT $2)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .prepared()
    .execute(conn)
    .await
}

/// Counts a failed publish attempt of pending rows; they stay pending and are tried again.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    error: &str,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 \
          WHERE id = ANY($1) AND status = 'pending'",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(error)
    .prepared()
    .execute(conn)
    .await
}

/// Rows waiting to be published (an index-only count over the partial index).
pub async fn count_pending(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count =
        diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE status = 'pending'")
            .get_result(conn)
            .await?;
    Ok(count.n)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use serde::{Deserialize, Serialize};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;
    use uuid::Uuid;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "payload", rename_all = "snake_case")]
    enum Sample {
        Pinged { n: u32 },
    }
    impl Payload for Sample {
        const VERSION: u16 = 1;
    }

    #[test]
    fn record_from_envelope_keeps_the_envelope_and_the_current_trace() -> anyhow::Result<()> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let envelope = Envelope::new(Uuid::nil(), Sample::Pinged { n: 7 });
        let (record, trace_id) = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("dispatch");
            let record = span.in_scope(|| NewOutboxRecord::from_envelope("jobs", "k", &envelope));
            (record, span.context().span().span_context().trace_id())
        });
        let record = record?;
        assert_eq!((record.topic.as_str(), record.key.as_str()), ("jobs", "k"));
        let back = Envelope::<Sample>::from_json(&serde_json::to_vec(&record.payload)?)?;
        assert_eq!(back, envelope);
        let traceparent = record.headers["traceparent"].as_str().unwrap_or_default();
        assert!(
            traceparent.contains(&trace_id.to_string()),
            "{traceparent} should carry trace {trace_id}"
        );
        Ok(())
    }

    #[test]
    fn header_pairs_ignore_values_that_are_not_strings() {
        let record = OutboxRecord {
            id: 1,
            topic: "t".into(),
            message_key: None,
            payload: serde_json::json!({}),
            headers: serde_json::json!({"traceparent": "00-ab", "odd": 1}),
            attempts: 0,
            created_at: Utc::now(),
        };
        assert_eq!(record.header_pairs(), vec![("traceparent", "00-ab")]);
    }
}
