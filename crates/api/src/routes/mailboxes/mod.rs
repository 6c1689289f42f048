//! `/api/v1/mailboxes`: the workspace's sending mailboxes (SMTP, optional IMAP for reply
//! detection, daily limit, spacing, timezone, warmup, status), and
//! `POST /api/v1/mailboxes/{id}/verify`, which tries the stored settings on the servers.
//!
//! Passwords are encrypted with `AppState.cipher` before they are stored (associated data
//! `mailboxes.smtp_password:<id>` / `mailboxes.imap_password:<id>`), decrypted in memory only
//! by `verify`, and never returned nor logged: responses carry `password_set` instead.
//!
//! `PUT` is a partial update: omitted fields keep their values (an omitted password keeps
//! the stored one), `null` clears what may be empty (`from_name`, `imap`, `smtp.username`).

mod model;
mod oauth;
mod validation;
mod values;
mod verify;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use domain::db::mailboxes as db;
use domain::db::{inbox, mailbox_oauth};
use paperclip::actix::{CreatedJson, NoContent, api_v2_operation, web};
use uuid::Uuid;

pub(crate) use self::model::{
    AuthStatus, AuthType, ImapSettings, ImapUpdate, ImapView, InboxWatchView, MAX_DAILY_LIMIT,
    MAX_FROM_NAME_LEN, MAX_PASSWORD_LEN, MAX_SPACING_SECONDS, MAX_USERNAME_LEN, MailboxAuth,
    MailboxStatus, Security, SettableStatus, SmtpSettings, SmtpUpdate, SmtpView, WarmupSettings,
    WarmupView,
};
use self::model::{CreateMailbox, ListQuery, Mailbox, UpdateMailbox};
use self::validation::check_hosts_reachable;
use self::values::{imap_settings, merge, new_values};
pub(crate) use self::verify::CheckResult;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;
use crate::pagination::{Page, PageRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mailboxes")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/mailboxes/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
    verify::configure(cfg);
    oauth::configure(cfg);
}

/// Fills in each mailbox's `auth` (from its OAuth grant, if any) and `imap.watch`.
async fn complete(
    conn: &mut diesel_async::AsyncPgConnection,
    mailboxes: &mut [Mailbox],
) -> Result<(), ApiError> {
    let all: Vec<Uuid> = mailboxes.iter().map(|m| m.id).collect();
    for grant in mailbox_oauth::find_many(conn, &all).await? {
        if let Some(mailbox) = mailboxes.iter_mut().find(|m| m.id == grant.mailbox_id) {
            mailbox.auth = MailboxAuth::oauth2(&grant, mailbox.status);
        }
    }
    let ids: Vec<Uuid> = mailboxes
        .iter()
        .filter(|m| m.imap.is_some())
        .map(|m| m.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let states = inbox::states(conn, &ids).await?;
    for mailbox in mailboxes {
        let state = states.iter().find(|s| s.mailbox_id == mailbox.id);
        if let (Some(imap), Some(state)) = (mailbox.imap.as_mut(), state) {
            imap.watch = Some(InboxWatchView {
                status: state.status.clone(),
                last_error: state.last_error.clone(),
                consecutive_failures: state.consecutive_failures,
                last_checked_at: state.last_checked_at,
            });
        }
    }
    Ok(())
}

/// A second mailbox with the same address in the workspace is a 409.
fn duplicate_email(error: DieselError) -> ApiError {
    match &error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(db::UNIQUE_EMAIL_CONSTRAINT) =>
        {
            ApiError::Conflict("a mailbox with this email already exists in the workspace".into())
        }
        _ => error.into(),
    }
}

/// Connect a mailbox
///
/// Stores the SMTP (and optional IMAP) settings with the passwords encrypted, plus the daily
/// limit, spacing, timezone and warmup. 409 when the workspace already has a mailbox with
/// this email; 503 `encryption_not_configured` when a password is given to a server without
/// `security.encryption_keys`. A host given as an IP address that is not public (loopback,
/// private, link-local, ...) is a 422 naming the field: the platform does not connect to
/// private networks. Settings are not tried here: see `POST /mailboxes/{id}/verify`.
#[api_v2_operation(tags(Mailboxes))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<CreateMailbox>,
) -> Result<CreatedJson<Mailbox>, ApiError> {
    let body = body.into_inner();
    check_hosts_reachable(
        &state.outbound,
        std::iter::once(("smtp.host", body.smtp.host.as_str())).chain(
            body.imap
                .as_ref()
                .map(|imap| ("imap.host", imap.host.as_str())),
        ),
    )?;
    let id = Uuid::now_v7();
    let values = new_values(id, &body, state.cipher.as_ref())?;
    let mut conn = state.pool.get().await?;
    let created = db::insert(
        &mut conn,
        &db::NewMailbox {
            id,
            workspace_id: caller.workspace_id,
            values,
        },
    )
    .await
    .map_err(duplicate_email)?;
    tracing::info!(workspace.id = %caller.workspace_id, mailbox.id = %id, "mailbox created");
    // A new mailbox has no grant and no watcher yet: nothing to complete.
    Ok(CreatedJson(created.try_into()?))
}

/// List mailboxes
///
/// The workspace's mailboxes in creation order, a page at a time (`limit`, `cursor`).
#[api_v2_operation(tags(Mailboxes))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<ListQuery>,
) -> Result<web::Json<Page<Mailbox>>, ApiError> {
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let rows = db::list(&mut conn, caller.workspace_id, page.after, page.fetch()).await?;
    let (rows, next_cursor) = page.finish(rows, |m| m.id);
    let mut data = rows
        .into_iter()
        .map(Mailbox::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    complete(&mut conn, &mut data).await?;
    Ok(web::Json(Page { data, next_cursor }))
}

/// Get a mailbox
#[api_v2_operation(tags(Mailboxes))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Mailbox>, ApiError> {
    let mut conn = state.pool.get().await?;
    let mailbox = db::find(&mut conn, caller.workspace_id, id.into_inner())
        .await?
        .ok_or(ApiError::NotFound("mailbox"))?;
    let mut mailbox: Mailbox = mailbox.try_into()?;
    complete(&mut conn, std::slice::from_mut(&mut mailbox)).await?;
    Ok(web::Json(mailbox))
}

/// Update a mailbox
///
/// Partial update: omitted fields keep their values (an omitted password keeps the stored
/// one); `null` removes `from_name`, `imap` or `smtp.username` (with its password). Setting
/// `status` (active, paused, disabled) clears `status_reason`; changing any SMTP or IMAP
/// setting of a mailbox in `error` makes it `active` again. `{"status": "active"}` resumes a
/// paused mailbox, also one the reputation guard paused (`max_bounce_rate`,
/// `max_complaint_rate`): its messages that waited are sent.
#[api_v2_operation(tags(Mailboxes))]
async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<UpdateMailbox>,
) -> Result<web::Json<Mailbox>, ApiError> {
    let body = body.into_inner();
    let smtp_host = body.smtp.as_ref().and_then(|smtp| smtp.host.as_deref());
    let imap_host = match &body.imap {
        Some(Some(imap)) => imap.host.as_deref(),
        _ => None,
    };
    check_hosts_reachable(
        &state.outbound,
        [("smtp.host", smtp_host), ("imap.host", imap_host)]
            .into_iter()
            .filter_map(|(field, host)| Some((field, host?))),
    )?;
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    let cipher = state.cipher.as_ref();
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction(async |tx| -> Result<db::Mailbox, ApiError> {
            let current = db::find_for_update(tx, workspace_id, id)
                .await?
                .ok_or(ApiError::NotFound("mailbox"))?;
            let imap_before = imap_settings(&current);
            let oauth = mailbox_oauth::find(tx, id).await?.is_some();
            let values = merge(current, &body, cipher, oauth)?;
            let updated = db::update(tx, workspace_id, id, &values)
                .await
                .map_err(duplicate_email)?
                .ok_or(ApiError::NotFound("mailbox"))?;
            if imap_settings(&updated) != imap_before {
                // The watcher holding the old settings stops, and the mailbox is read afresh
                // (by date: answers already recorded are not recorded again).
                inbox::forget(tx, id).await?;
            }
            Ok(updated)
        })
        .await?;
    tracing::info!(workspace.id = %workspace_id, mailbox.id = %id, "mailbox updated");
    let mut mailbox: Mailbox = updated.try_into()?;
    complete(&mut conn, std::slice::from_mut(&mut mailbox)).await?;
    Ok(web::Json(mailbox))
}

/// Delete a mailbox
///
/// Removes the mailbox and its encrypted credentials; enrollments that used it pick another
/// mailbox of their sequence. A mailbox connected with OAuth has its refresh token revoked at
/// the provider afterwards, best effort (a failure is logged; the mailbox is gone anyway). 409 once messages were sent or queued from it (deleting would
/// erase their history): set `status` to `disabled` instead.
#[api_v2_operation(tags(Mailboxes))]
async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    // Read before the delete, which takes the grant with it (cascade).
    let grant = match db::find(&mut conn, caller.workspace_id, id).await? {
        Some(_) => mailbox_oauth::find(&mut conn, id).await?,
        None => None,
    };
    match db::delete(&mut conn, caller.workspace_id, id).await? {
        db::Deleted::Yes => {
            tracing::info!(workspace.id = %caller.workspace_id, mailbox.id = %id, "mailbox deleted");
            drop(conn);
            if let Some(grant) = grant {
                oauth::revoke_grant(&state, &grant).await;
            }
            Ok(NoContent)
        }
        db::Deleted::NotFound => Err(ApiError::NotFound("mailbox")),
        db::Deleted::HasMessages => Err(ApiError::Conflict(
            "messages were sent from this mailbox; set its status to `disabled` instead of \
             deleting it, so their history stays"
                .into(),
        )),
    }
}
