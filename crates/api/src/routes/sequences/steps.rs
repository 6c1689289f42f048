//! `POST /sequences/{id}/steps`, `PUT/DELETE /sequences/{id}/steps/{step_id}`, following the
//! editing rules in the parent module.

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::db::steps::StepChanges;
use paperclip::actix::{CreatedJson, NoContent, api_v2_operation, web};
use uuid::Uuid;

use super::model::{Step, StepInput, UpdateStep};
use super::{editable, new_step};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;
use crate::state::AppState;
use crate::validation::Checks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sequences/{id}/steps").route(web::post().to(add)))
        .service(
            web::resource("/sequences/{id}/steps/{step_id}")
                .route(web::put().to(update))
                .route(web::delete().to(remove)),
        );
}

/// Add a step
///
/// At the place its `step_order` key takes among the others' (default: after the last
/// step); later steps move down one position. A key another step has is a 409. Contacts
/// already due for that position or past it do not get the new step.
#[api_v2_operation(tags(Sequences))]
async fn add(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<StepInput>,
) -> Result<CreatedJson<Step>, ApiError> {
    let body = body.into_inner();
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    let step = conn
        .transaction(async |tx| -> Result<Step, ApiError> {
            editable(tx, caller.workspace_id, id).await?;
            let live = domain::db::steps::live_for(tx, &[id]).await?;
            if live.len() >= super::model::MAX_STEPS {
                return Err(ApiError::Conflict(format!(
                    "a sequence has at most {} steps",
                    super::model::MAX_STEPS
                )));
            }
            let key = body.step_order.unwrap_or_else(|| {
                live.iter()
                    .map(|s| s.order_key)
                    .max()
                    .map_or(1, |max| max.saturating_add(1))
            });
            key_free(&live, None, key)?;
            let position = position_of(&live, None, key);
            // The body was checked as a later step; as the new first step, the first step's
            // rules apply too, and failing them is because of the steps already there.
            let mut checks = Checks::default();
            body.check(&mut checks, "", position == 1);
            checks.finish().map_err(ApiError::ConflictingFields)?;
            let last = live.last().map_or(0, |s| s.step_order);
            if position <= last {
                domain::db::steps::shift_positions(tx, id, position, 1).await?;
                domain::db::enrollments::shift_positions(tx, id, position, 1).await?;
            }
            let new = new_step(id, &body, position, key, position == 1);
            let mut inserted = domain::db::steps::insert_many(tx, &[new]).await?;
            let step = inserted
                .pop()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("insert returned no step")))?;
            super::load::step(tx, caller.workspace_id, step).await
        })
        .await?;
    Ok(CreatedJson(step))
}

/// A 409 when another live step than `except` has the key.
fn key_free(
    live: &[domain::db::steps::Step],
    except: Option<Uuid>,
    key: i32,
) -> Result<(), ApiError> {
    match live
        .iter()
        .find(|s| Some(s.id) != except && s.order_key == key)
    {
        Some(taken) => Err(ApiError::conflicting(
            "step_order",
            format!("{key} is already the step_order of step {}", taken.id),
        )),
        None => Ok(()),
    }
}

/// The position a step with `key` takes among the live steps other than `except`.
fn position_of(live: &[domain::db::steps::Step], except: Option<Uuid>, key: i32) -> i32 {
    let before = live
        .iter()
        .filter(|s| Some(s.id) != except && s.order_key < key)
        .count();
    i32::try_from(before).unwrap_or(i32::MAX - 1) + 1
}

/// Update a step
///
/// Omitted fields keep their value. Edits apply to the step's emails not yet sent. A new
/// `step_order` key that another step has is a 409; one that moves the step to another
/// position is allowed only while nobody is enrolled (409).
#[api_v2_operation(tags(Sequences))]
async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: Body<UpdateStep>,
) -> Result<web::Json<Step>, ApiError> {
    let body = body.into_inner();
    let (id, step_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    let step = conn
        .transaction(async |tx| -> Result<Step, ApiError> {
            editable(tx, caller.workspace_id, id).await?;
            let current = domain::db::steps::find_live(tx, id, step_id)
                .await?
                .ok_or(ApiError::NotFound("step"))?;
            let new_key = body.step_order.filter(|k| *k != current.order_key);
            if let Some(key) = new_key {
                let live = domain::db::steps::live_for(tx, &[id]).await?;
                key_free(&live, Some(step_id), key)?;
                let position = position_of(&live, Some(step_id), key);
                if position != current.step_order {
                    move_step(tx, id, &current, position).await?;
                }
            }
            let changes = StepChanges {
                order_key: new_key,
                subject: body.subject.as_deref().map(|s| s.trim().to_owned()),
                content: body.content.clone(),
                wait_days: body.wait_days,
                wait_hours: body.wait_hours,
                wait_minutes: body.wait_minutes,
                thread_with_previous: body.thread_with_previous,
                variants: body
                    .variants
                    .as_ref()
                    .map(|v| serde_json::to_value(v).unwrap_or_default()),
            };
            if has_changes(&changes) {
                domain::db::steps::update(tx, step_id, &changes).await?;
            }
            let explicit = body.thread_with_previous.map(|t| (step_id, t));
            ensure_first_step(tx, id, explicit).await?;
            let updated = domain::db::steps::find_live(tx, id, step_id)
                .await?
                .ok_or(ApiError::NotFound("step"))?;
            super::load::step(tx, caller.workspace_id, updated).await
        })
        .await?;
    Ok(web::Json(step))
}

/// Remove a step
///
/// Contacts waiting for it go on to the step that followed; later steps move up one position.
#[api_v2_operation(tags(Sequences))]
async fn remove(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<NoContent, ApiError> {
    let (id, step_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    conn.transaction(async |tx| -> Result<(), ApiError> {
        editable(tx, caller.workspace_id, id).await?;
        let step = domain::db::steps::find_live(tx, id, step_id)
            .await?
            .ok_or(ApiError::NotFound("step"))?;
        domain::db::steps::remove(tx, step_id).await?;
        domain::db::steps::shift_positions(tx, id, step.step_order + 1, -1).await?;
        domain::db::enrollments::shift_positions(tx, id, step.step_order + 1, -1).await?;
        ensure_first_step(tx, id, None).await?;
        Ok(())
    })
    .await?;
    Ok(NoContent)
}

async fn move_step(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    step: &domain::db::steps::Step,
    position: i32,
) -> Result<(), ApiError> {
    if domain::db::sequences::has_enrollments(conn, sequence_id).await? {
        return Err(ApiError::Conflict(
            "steps cannot be reordered once contacts are enrolled; remove and add steps instead"
                .to_owned(),
        ));
    }
    let live = domain::db::steps::live_for(conn, &[sequence_id]).await?;
    let last = live.last().map_or(1, |s| s.step_order);
    if position > last {
        return Err(ApiError::conflicting(
            "step_order",
            format!("must be at most {last}"),
        ));
    }
    // Take the step out of the numbering, close the gap, open one at the new position.
    domain::db::steps::set_position(conn, step.id, last + 1).await?;
    domain::db::steps::shift_positions(conn, sequence_id, step.step_order + 1, -1).await?;
    domain::db::steps::shift_positions(conn, sequence_id, position, 1).await?;
    domain::db::steps::set_position(conn, step.id, position).await?;
    Ok(())
}

/// After an edit the first live step must be able to open a thread: it needs a subject, and a
/// step that became first by removal or reordering stops being a reply. Setting
/// `thread_with_previous` on the first step explicitly is an error instead.
async fn ensure_first_step(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    explicit_thread: Option<(Uuid, bool)>,
) -> Result<(), ApiError> {
    let live = domain::db::steps::live_for(conn, &[sequence_id]).await?;
    let Some(first) = live.first() else {
        return Ok(());
    };
    if first.subject.trim().is_empty() {
        return Err(ApiError::conflicting(
            "subject",
            format!(
                "the step with step_order {} would become the first step and needs a subject",
                first.order_key
            ),
        ));
    }
    if first.thread_with_previous {
        if explicit_thread == Some((first.id, true)) {
            return Err(ApiError::conflicting(
                "thread_with_previous",
                "the first step has no thread to reply in",
            ));
        }
        let changes = StepChanges {
            thread_with_previous: Some(false),
            ..StepChanges::default()
        };
        domain::db::steps::update(conn, first.id, &changes).await?;
    }
    Ok(())
}

fn has_changes(changes: &StepChanges) -> bool {
    changes.order_key.is_some()
        || changes.subject.is_some()
        || changes.content.is_some()
        || changes.wait_days.is_some()
        || changes.wait_hours.is_some()
        || changes.wait_minutes.is_some()
        || changes.thread_with_previous.is_some()
        || changes.variants.is_some()
}
