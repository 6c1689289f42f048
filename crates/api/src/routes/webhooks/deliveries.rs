//! An endpoint's deliveries: `POST /webhooks/{id}/test`, the listing and one delivery with
//! their attempts, `POST .../deliveries/{delivery_id}/retry` and `POST /webhooks/{id}/replay`.
//!
//! **Invariant:** the API only writes rows; the webhooks service sends every delivery that
//! is `pending` and due (`next_attempt_at <= now()`) to an enabled endpoint. So a test, a
//! retry and a replay answer 202 once the delivery is pending and due now, before anything is
//! sent.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use domain::db::webhook_deliveries::{self as db, Filter, NewDelivery};
use domain::db::{PgConn, webhook_endpoints};
use domain::webhooks::event_types;
use paperclip::actix::{AcceptedJson, api_v2_operation, web};
use serde_json::json;
use uuid::Uuid;

use super::delivery_model::{ListDeliveries, ReplayQuery, Replayed, WebhookDelivery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;
use crate::pagination::{Page, PageRequest, check_status_filter};
use crate::state::AppState;

/// The type of the event `POST /webhooks/{id}/test` sends.
const TEST_EVENT: &str = "webhook.test";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/webhooks/{id}/test").route(web::post().to(test)))
        .service(web::resource("/webhooks/{id}/deliveries").route(web::get().to(list)))
        .service(web::resource("/webhooks/{id}/deliveries/{delivery_id}").route(web::get().to(get)))
        .service(
            web::resource("/webhooks/{id}/deliveries/{delivery_id}/retry")
                .route(web::post().to(retry)),
        )
        .service(web::resource("/webhooks/{id}/replay").route(web::post().to(replay)));
}

/// The caller's endpoint, or 404.
async fn endpoint(
    conn: &mut PgConn,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<webhook_endpoints::WebhookEndpoint, ApiError> {
    webhook_endpoints::find(conn, workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}

/// A delivery's view with its attempts.
async fn view(conn: &mut PgConn, row: db::Delivery) -> Result<WebhookDelivery, ApiError> {
    let mut attempts = db::attempts_of(conn, &[row.id]).await?;
    let log = attempts.remove(&row.id).unwrap_or_default();
    Ok(WebhookDelivery::of(row, log))
}

/// Send a test event
///
/// Records a `webhook.test` event for this endpoint, whatever event types it asked for,
/// and answers 202 with its delivery, pending and due now; the webhooks service sends it
/// within seconds, signed like every event. Its body:
/// `{"type": "webhook.test", "timestamp": ..., "data": {"workspace_id": ..., "webhook_id": ...}}`.
/// Follow it with `GET /webhooks/{id}/deliveries/{delivery_id}`. A disabled endpoint
/// receives nothing: 409 (enable it first).
#[api_v2_operation(tags(Webhooks))]
async fn test(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<AcceptedJson<WebhookDelivery>, ApiError> {
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    let mut conn = state.pool.get().await?;
    let target = endpoint(&mut conn, workspace_id, id).await?;
    if !target.enabled {
        return Err(ApiError::Conflict(format!(
            "the webhook endpoint is disabled and receives nothing; enable it first \
             (PUT /api/v1/webhooks/{id} with {{\"enabled\": true}})"
        )));
    }
    // Milliseconds, as the webhooks service writes every body's timestamp; truncated so
    // that the delivery's `occurred_at` is the body's timestamp.
    let now = Utc::now().trunc_subsecs(3);
    let payload = json!({
        "type": TEST_EVENT,
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": {"workspace_id": workspace_id, "webhook_id": id},
    });
    let row = db::insert(
        &mut conn,
        &NewDelivery {
            id: Uuid::now_v7(),
            endpoint_id: id,
            workspace_id,
            event_id: Uuid::now_v7(),
            event_type: TEST_EVENT.to_owned(),
            payload,
            occurred_at: now,
        },
    )
    .await?;
    tracing::info!(workspace.id = %workspace_id, webhook.id = %id, delivery.id = %row.id, "webhook test event recorded");
    Ok(AcceptedJson(WebhookDelivery::of(row, Vec::new())))
}

/// List an endpoint's deliveries
///
/// Newest first, a page at a time (`limit`, `cursor`), each with its attempts oldest first.
/// Filters: `status` (`pending`, `delivered`, `failed`) and `event_type`; another value is a
/// 422 naming the parameter.
#[api_v2_operation(tags(Webhooks))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: Query<ListDeliveries>,
) -> Result<web::Json<Page<WebhookDelivery>>, ApiError> {
    check_status_filter(query.status.as_deref(), &db::STATUSES)?;
    if let Some(name) = query.event_type.as_deref()
        && !event_types::is_known(name)
    {
        return Err(ApiError::invalid(
            "event_type",
            format!("must be one of {}", event_types::ALL.join(", ")),
        ));
    }
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    endpoint(&mut conn, caller.workspace_id, id).await?;
    let filter = Filter {
        status: query.status.as_deref(),
        event_type: query.event_type.as_deref(),
    };
    let rows = db::list(
        &mut conn,
        caller.workspace_id,
        id,
        filter,
        page.after,
        page.fetch(),
    )
    .await?;
    let (rows, next_cursor) = page.finish(rows, |d| d.id);
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = db::attempts_of(&mut conn, &ids).await?;
    Ok(web::Json(Page {
        data: WebhookDelivery::all(rows, attempts),
        next_cursor,
    }))
}

/// Get a delivery
///
/// One delivery of the endpoint with its attempts, oldest first.
#[api_v2_operation(tags(Webhooks))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<WebhookDelivery>, ApiError> {
    let (id, delivery_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    let row = db::find(&mut conn, caller.workspace_id, id, delivery_id)
        .await?
        .ok_or(ApiError::NotFound("webhook delivery"))?;
    Ok(web::Json(view(&mut conn, row).await?))
}

/// Retry a delivery
///
/// Makes the delivery pending and due now, whatever its status (a delivered one is sent
/// again, with the same `webhook-id`), and answers 202 with it. `attempts` keeps counting:
/// if this attempt fails too, the delivery is retried on what is left of the retry
/// schedule, or `failed` at once when its retries had run out. A disabled endpoint's
/// deliveries wait until it is enabled.
#[api_v2_operation(tags(Webhooks))]
async fn retry(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<AcceptedJson<WebhookDelivery>, ApiError> {
    let (id, delivery_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    let row = db::retry(&mut conn, caller.workspace_id, id, delivery_id)
        .await?
        .ok_or(ApiError::NotFound("webhook delivery"))?;
    tracing::info!(workspace.id = %caller.workspace_id, webhook.id = %id, delivery.id = %delivery_id, "webhook delivery retried");
    Ok(AcceptedJson(view(&mut conn, row).await?))
}

/// Replay an endpoint's events
///
/// Sends again every event recorded for this endpoint that occurred at or after `since`
/// (RFC 3339, e.g. `2026-03-02T10:00:00Z`; write a `+` offset as `%2B`): each of its
/// deliveries, whatever its status, becomes pending and due now, with its `webhook-id`
/// unchanged. Answers 202 with how many. Only what was recorded for this endpoint is
/// replayed: events from before it existed, of types it did not ask for, or that occurred
/// while it was disabled were never recorded for it. A disabled endpoint's deliveries wait
/// until it is enabled. `since` missing or malformed: 422 naming it; one in the future
/// replays nothing.
#[api_v2_operation(tags(Webhooks))]
async fn replay(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: Query<ReplayQuery>,
) -> Result<AcceptedJson<Replayed>, ApiError> {
    let since = since(query.since.as_deref())?;
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    endpoint(&mut conn, caller.workspace_id, id).await?;
    let replayed = db::replay(&mut conn, caller.workspace_id, id, since).await?;
    tracing::info!(workspace.id = %caller.workspace_id, webhook.id = %id, replayed, "webhook deliveries replayed");
    Ok(AcceptedJson(Replayed {
        replayed: i64::try_from(replayed).unwrap_or(i64::MAX),
    }))
}

/// The replay's `since`: an RFC 3339 time (one in the future matches nothing).
fn since(text: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let text = text
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("since", "required: an RFC 3339 time"))?;
    let since = DateTime::parse_from_rfc3339(text)
        .map_err(|_| {
            ApiError::invalid(
                "since",
                "must be an RFC 3339 time such as 2026-03-02T10:00:00Z",
            )
        })?
        .with_timezone(&Utc);
    Ok(since)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Validation(details) => {
                details.first().map(|d| d.field.clone()).unwrap_or_default()
            }
            other => format!("not a validation error: {other}"),
        }
    }

    #[test]
    fn since_is_an_rfc3339_time() {
        assert_eq!(
            since(Some("2026-03-02T10:00:00Z")).ok(),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).single()
        );
        assert_eq!(
            since(Some("2026-03-02T12:30:00+02:00")).ok(),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).single()
        );
        assert_eq!(
            since(Some("2126-03-02T12:00:00Z")).ok(),
            Utc.with_ymd_and_hms(2126, 3, 2, 12, 0, 0).single()
        );
        for bad in [
            None,
            Some(""),
            Some("yesterday"),
            Some("2026-03-02"),
            Some("2026-03-02 10:00:00"),
        ] {
            let error = since(bad).err();
            assert_eq!(
                error.map(field_of).as_deref(),
                Some("since"),
                "{bad:?} was accepted"
            );
        }
    }
}
