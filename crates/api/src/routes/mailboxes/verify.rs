//! `POST /mailboxes/{id}/verify`: tries the stored settings on the servers.

use domain::db::mailbox_oauth;
use domain::db::mailboxes as db;
use domain::mail;
use domain::mail::mailbox_check::CheckSetupError;
use domain::oauth::{AccessError, AccessToken};
use paperclip::actix::{Apiv2Schema, api_v2_operation, web};
use serde::Serialize;
use uuid::Uuid;

use super::model::MailboxStatus;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/mailboxes/{id}/verify").route(web::post().to(verify)));
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct CheckResult {
    pub ok: bool,
    /// What failed, when `ok` is false. Never contains the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<Result<(), mail::CheckError>> for CheckResult {
    fn from(result: Result<(), mail::CheckError>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(error) => Self {
                ok: false,
                error: Some(error.message().to_owned()),
            },
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct VerifyResult {
    pub smtp: CheckResult,
    /// `null` when the mailbox has no IMAP settings.
    pub imap: Option<CheckResult>,
    /// The mailbox's status after the check.
    pub status: MailboxStatus,
    pub status_reason: Option<String>,
}

/// Verify a mailbox
///
/// Tries the stored settings: SMTP (connect with the configured security, EHLO, AUTH when a
/// username is set) and, when configured, IMAP (connect, LOGIN), each within 10 s. Always
/// 200 with the outcome of each; a failure message never contains the password. A host that
/// resolves to an address that is not public is not connected to: its check fails with
/// `refused: resolves to a private address`. A failure moves an `active` mailbox to `error`
/// (with `status_reason`); a success moves an `error` mailbox back to `active`; `paused` and
/// `disabled` stay as they are. A mailbox in `error` is also re-checked automatically, with a
/// growing wait (`next_check_at`, `check_failures`); a verify starts that schedule over.
///
/// A mailbox connected with OAuth logs in with its access token (refreshed first when it is
/// about to expire). When the provider no longer accepts the grant, the answer says so for
/// each server and the status is `reconnect_required` (see `POST
/// /mailboxes/{id}/oauth/reconnect`); when the token cannot be refreshed for now (provider
/// unreachable), each check fails with the reason and the status does not change.
#[api_v2_operation(tags(Mailboxes))]
async fn verify(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<VerifyResult>, ApiError> {
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    // No pooled connection is held while talking to the mail servers.
    let (mailbox, oauth) = {
        let mut conn = state.pool.get().await?;
        let mailbox = db::find(&mut conn, workspace_id, id)
            .await?
            .ok_or(ApiError::NotFound("mailbox"))?;
        let oauth = mailbox_oauth::find(&mut conn, id).await?.is_some();
        (mailbox, oauth)
    };
    let token = if oauth {
        match access_token(&state, id).await? {
            Ok(token) => Some(token),
            Err(unusable) => return unusable_grant(&state, &mailbox, unusable).await,
        }
    } else {
        None
    };
    let check = mail::mailbox_check::check_mailbox(
        &state.outbound,
        state.cipher.as_ref(),
        &mailbox,
        token.as_ref(),
        mail::CHECK_TIMEOUT,
    )
    .await
    .map_err(|error| match error {
        CheckSetupError::NoEncryptionKeys => ApiError::EncryptionUnavailable,
        CheckSetupError::Undecryptable { .. } => {
            ApiError::Conflict(format!("{error}; set it again with PUT"))
        }
        CheckSetupError::Invalid(_) => ApiError::internal(error),
    })?;
    let failure = check.failure();

    let mut conn = state.pool.get().await?;
    let after = db::record_check(
        &mut conn,
        workspace_id,
        id,
        mailbox.updated_at,
        failure.as_deref(),
    )
    .await?
    .ok_or(ApiError::NotFound("mailbox"))?;
    tracing::info!(
        workspace.id = %workspace_id,
        mailbox.id = %id,
        smtp_ok = check.smtp.is_ok(),
        imap_ok = check.imap.as_ref().map(Result::is_ok),
        status = %after.status,
        "mailbox verified"
    );
    Ok(web::Json(VerifyResult {
        smtp: check.smtp.into(),
        imap: check.imap.map(CheckResult::from),
        status: MailboxStatus::parse(&after.status)?,
        status_reason: after.status_reason,
    }))
}

/// The mailbox's access token, or why none is usable (a check's answer, not an error).
async fn access_token(
    state: &AppState,
    id: Uuid,
) -> Result<Result<AccessToken, AccessError>, ApiError> {
    let access = state
        .oauth
        .access
        .as_ref()
        .ok_or(ApiError::EncryptionUnavailable)?;
    match access.current(id).await {
        Ok(token) => Ok(Ok(token)),
        Err(AccessError::Db(error)) => Err(ApiError::internal(error)),
        Err(AccessError::Undecryptable) => Err(ApiError::Conflict(format!(
            "{}; reconnect the mailbox",
            AccessError::Undecryptable
        ))),
        Err(AccessError::NotConnected) => Err(ApiError::NotFound("mailbox")),
        Err(unusable) => Ok(Err(unusable)),
    }
}

/// The answer for an OAuth mailbox without a usable token: both checks fail with the reason,
/// and the status is what it is now (`reconnect_required` when the grant is gone).
async fn unusable_grant(
    state: &AppState,
    mailbox: &db::Mailbox,
    unusable: AccessError,
) -> Result<web::Json<VerifyResult>, ApiError> {
    let failed = || CheckResult {
        ok: false,
        error: Some(unusable.to_string()),
    };
    let mut conn = state.pool.get().await?;
    let now = db::find(&mut conn, mailbox.workspace_id, mailbox.id)
        .await?
        .ok_or(ApiError::NotFound("mailbox"))?;
    tracing::info!(
        workspace.id = %mailbox.workspace_id,
        mailbox.id = %mailbox.id,
        reconnect_required = unusable.is_reconnect_required(),
        status = %now.status,
        "mailbox not verified: no usable OAuth access token"
    );
    Ok(web::Json(VerifyResult {
        smtp: failed(),
        imap: mailbox.imap_host.is_some().then(failed),
        status: MailboxStatus::parse(&now.status)?,
        status_reason: now.status_reason,
    }))
}
