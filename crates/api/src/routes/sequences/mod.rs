//! `/api/v1/sequences`: campaigns and their steps.
//!
//! Editing rules while contacts are mid-sequence (each enrollment points at the position of
//! its next step):
//! - Content edits (subject, body, variants, waits, threading) apply to every email of the
//!   step not yet sent; sent emails stay as they were.
//! - A step added at position k goes to contacts whose next position is before k; contacts
//!   already due for position k or later keep their next step and never get the new one.
//! - A removed step is skipped: contacts waiting for it go on to the step that followed it.
//!   A step that was already emailed is kept as history behind the scenes.
//! - Positions of existing steps change only while nobody is enrolled (409 otherwise): add
//!   and remove steps instead.
//! - Archived sequences are read-only; deleting is for sequences nobody was enrolled in
//!   (archive the others).

mod load;
pub mod model;
mod status;
mod steps;
mod warnings;

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::db::sequences::{NewSequence, SequenceChanges};
use domain::db::steps::NewStep;
use paperclip::actix::{CreatedJson, NoContent, api_v2_operation, web};
use uuid::Uuid;

use self::model::{
    CreateSequence, ListSequences, Sequence, SequencePage, StepInput, UpdateSequence, default_end,
    default_start, parse_time,
};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::Body;
use crate::pagination::PageRequest;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sequences")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/sequences/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
    status::configure(cfg);
    steps::configure(cfg);
}

/// Create a sequence
///
/// Accepts the seed's body (`name`, `open_tracking_enabled`, `click_tracking_enabled`,
/// `steps[] {step_order, subject, content, wait_days}`) and more. Templates are validated:
/// an error names the field and the line and column. New sequences are drafts.
#[api_v2_operation(tags(Sequences))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<CreateSequence>,
) -> Result<CreatedJson<Sequence>, ApiError> {
    let body = body.into_inner();
    let mut conn = state.pool.get().await?;
    let sequence = conn
        .transaction(async |tx| -> Result<Sequence, ApiError> {
            check_mailboxes(tx, caller.workspace_id, &body.mailbox_ids).await?;
            let window = body.sending_window.clone().unwrap_or_default();
            let timezone = window.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
            let sequence = domain::db::sequences::insert(
                tx,
                &NewSequence {
                    id: Uuid::now_v7(),
                    workspace_id: caller.workspace_id,
                    name: body.name.trim(),
                    open_tracking_enabled: body.open_tracking_enabled,
                    click_tracking_enabled: body.click_tracking_enabled,
                    track_url_text_links: body.track_url_text_links.unwrap_or(false),
                    stop_on_reply: body.stop_on_reply.unwrap_or(true),
                    stop_on_auto_reply: body.stop_on_auto_reply.unwrap_or(false),
                    unsubscribe_link: body.unsubscribe_link.unwrap_or(true),
                    tracking_domain: body.tracking_domain.as_deref(),
                    send_days: window.day_numbers().unwrap_or_else(|| vec![1, 2, 3, 4, 5]),
                    window_start: window
                        .start_time
                        .as_deref()
                        .and_then(parse_time)
                        .unwrap_or(default_start()),
                    window_end: window
                        .end_time
                        .as_deref()
                        .and_then(parse_time)
                        .unwrap_or(default_end()),
                    timezone: &timezone,
                    use_contact_timezone: window.use_contact_timezone.unwrap_or(true),
                    business_days_only: window.business_days_only.unwrap_or(false),
                },
            )
            .await?;
            let keys = model::step_keys(&body.steps);
            let positions = model::positions(&keys);
            let first = keys.iter().copied().min();
            let new_steps: Vec<NewStep> = body
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    new_step(
                        sequence.id,
                        step,
                        positions[i],
                        keys[i],
                        Some(keys[i]) == first,
                    )
                })
                .collect();
            if !new_steps.is_empty() {
                domain::db::steps::insert_many(tx, &new_steps).await?;
            }
            domain::db::sequences::set_mailboxes(tx, sequence.id, &body.mailbox_ids).await?;
            load::one(tx, sequence).await
        })
        .await?;
    tracing::info!(workspace.id = %caller.workspace_id, sequence.id = %sequence.id, "sequence created");
    Ok(CreatedJson(sequence))
}

/// List sequences
///
/// In creation order, with cursor pagination (`limit` up to 500, `cursor` from the previous
/// page) and an optional `status` filter.
#[api_v2_operation(tags(Sequences))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<ListSequences>,
) -> Result<web::Json<SequencePage>, ApiError> {
    let query = query.into_inner();
    crate::pagination::check_status_filter(
        query.status.as_deref(),
        &domain::db::sequences::STATUSES,
    )?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let rows = domain::db::sequences::list(
        &mut conn,
        caller.workspace_id,
        query.status.as_deref(),
        page.after,
        page.fetch(),
    )
    .await?;
    let (rows, next_cursor) = page.finish(rows, |s| s.id);
    let data = load::many(&mut conn, rows).await?;
    Ok(web::Json(SequencePage { data, next_cursor }))
}

/// Get a sequence
///
/// The sequence with its live steps and rotation pool.
#[api_v2_operation(tags(Sequences))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Sequence>, ApiError> {
    let mut conn = state.pool.get().await?;
    let sequence = owned(&mut conn, caller.workspace_id, id.into_inner()).await?;
    Ok(web::Json(load::one(&mut conn, sequence).await?))
}

/// Update a sequence
///
/// Changes the given settings; omitted fields keep their value. Steps have their own
/// endpoints. Archived sequences are read-only (409).
#[api_v2_operation(tags(Sequences))]
async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<UpdateSequence>,
) -> Result<web::Json<Sequence>, ApiError> {
    let body = body.into_inner();
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    let sequence = conn
        .transaction(async |tx| -> Result<Sequence, ApiError> {
            let current = editable(tx, caller.workspace_id, id).await?;
            let window = body.sending_window.clone().unwrap_or_default();
            let start = window
                .start_time
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(current.window_start);
            let end = window
                .end_time
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(current.window_end);
            if start >= end {
                // Both times given were compared by the body's validation: one of them is
                // stored.
                return Err(ApiError::conflicting(
                    "sending_window.end_time",
                    "must be after start_time (the window's stored times count)",
                ));
            }
            let changes = SequenceChanges {
                name: body.name.as_deref().map(str::trim),
                open_tracking_enabled: body.open_tracking_enabled,
                click_tracking_enabled: body.click_tracking_enabled,
                track_url_text_links: body.track_url_text_links,
                stop_on_reply: body.stop_on_reply,
                stop_on_auto_reply: body.stop_on_auto_reply,
                unsubscribe_link: body.unsubscribe_link,
                tracking_domain: body
                    .tracking_domain
                    .as_deref()
                    .map(|d| Some(d).filter(|d| !d.is_empty())),
                send_days: window.day_numbers(),
                window_start: Some(start),
                window_end: Some(end),
                timezone: window.timezone.as_deref(),
                use_contact_timezone: window.use_contact_timezone,
                business_days_only: window.business_days_only,
            };
            let updated = domain::db::sequences::update(tx, id, &changes).await?;
            if let Some(mailbox_ids) = &body.mailbox_ids {
                check_mailboxes(tx, caller.workspace_id, mailbox_ids).await?;
                domain::db::sequences::set_mailboxes(tx, id, mailbox_ids).await?;
            }
            load::one(tx, updated).await
        })
        .await?;
    Ok(web::Json(sequence))
}

/// Delete a sequence
///
/// Only a sequence nobody was ever enrolled in can be deleted (409 otherwise: archive it, so
/// its messages and statistics stay).
#[api_v2_operation(tags(Sequences))]
async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    conn.transaction(async |tx| -> Result<(), ApiError> {
        domain::db::sequences::lock(tx, caller.workspace_id, id)
            .await?
            .ok_or(ApiError::NotFound("sequence"))?;
        if domain::db::sequences::has_enrollments(tx, id).await? {
            return Err(ApiError::Conflict(
                "contacts were enrolled in this sequence; archive it instead".to_owned(),
            ));
        }
        domain::db::sequences::delete(tx, id).await?;
        Ok(())
    })
    .await?;
    Ok(NoContent)
}

/// The caller's sequence, or a 404 (also for another workspace's id).
pub(crate) async fn owned(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<domain::db::sequences::Sequence, ApiError> {
    domain::db::sequences::find(conn, workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("sequence"))
}

/// The sequence locked for an edit; archived ones are read-only.
async fn editable(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<domain::db::sequences::Sequence, ApiError> {
    let sequence = domain::db::sequences::lock(conn, workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("sequence"))?;
    if sequence.status == "archived" {
        return Err(ApiError::Conflict(
            "archived sequences are read-only".to_owned(),
        ));
    }
    Ok(sequence)
}

async fn check_mailboxes(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    ids: &[Uuid],
) -> Result<(), ApiError> {
    let known = domain::db::sequences::workspace_mailboxes(conn, workspace_id, ids).await?;
    let errors: Vec<FieldError> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !known.contains(id))
        .map(|(i, _)| {
            FieldError::new(
                format!("mailbox_ids[{i}]"),
                "no such mailbox in this workspace",
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::ConflictingFields(errors))
    }
}

/// A step at `position` with ordering key `key`; after the first step, steps reply in the
/// thread unless they say otherwise.
fn new_step(sequence_id: Uuid, step: &StepInput, position: i32, key: i32, first: bool) -> NewStep {
    NewStep {
        id: Uuid::now_v7(),
        sequence_id,
        step_order: position,
        order_key: key,
        subject: step.subject.trim().to_owned(),
        content: step.content.clone(),
        wait_days: step.wait_days,
        wait_hours: step.wait_hours,
        wait_minutes: step.wait_minutes,
        thread_with_previous: step.thread_with_previous.unwrap_or(!first),
        variants: serde_json::to_value(&step.variants).unwrap_or_default(),
    }
}
