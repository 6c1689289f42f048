//! What a successful callback stores, in one transaction: the mailbox (new, or the
//! workspace's mailbox with the account's address, or the one being reconnected) with the
//! provider's servers and no password, and its grant with the tokens encrypted.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::config::OAuthProviderConfig;
use domain::crypto::SecretCipher;
use domain::db::inbox;
use domain::db::mailbox_oauth::{self, NewGrant, access_token_context, refresh_token_context};
use domain::db::mailboxes::{self as db, MailboxValues, status};
use domain::db::oauth_authorizations::Authorization;
use domain::db::schema::mailboxes;
use domain::oauth::Tokens;
use secrecy::SecretString;
use uuid::Uuid;

use super::super::model::SmtpSettings;
use super::super::values::{imap_settings, merge, new_values};
use super::callback::Failure;
use super::model::AuthorizeMailbox;
use crate::state::AppState;

/// The unique index that keeps one account on one mailbox across workspaces.
const ACCOUNT_INDEX: &str = "mailbox_oauth_account_idx";

/// A connected mailbox.
#[derive(Debug, Clone, Copy)]
pub(super) struct Connection {
    pub workspace_id: Uuid,
    pub mailbox_id: Uuid,
}

pub(super) async fn store(
    state: &AppState,
    authorization: &Authorization,
    settings: AuthorizeMailbox,
    tokens: &Tokens,
    refresh_token: &SecretString,
    address: &str,
) -> Result<Connection, Failure> {
    let provider = state
        .oauth
        .config
        .provider(&authorization.provider)
        .ok_or(Failure::ProviderUnavailable)?;
    let cipher = state
        .cipher
        .as_ref()
        .ok_or_else(|| Failure::Server(anyhow::anyhow!("security.encryption_keys is empty")))?;
    let now = state.oauth.clock.now();
    let workspace_id = authorization.workspace_id;
    let mut conn = state.pool.get().await?;
    let mailbox_id = conn
        .transaction(async |tx| -> Result<Uuid, Failure> {
            let current = match authorization.mailbox_id {
                Some(id) => {
                    let current = db::find_for_update(tx, workspace_id, id)
                        .await?
                        .ok_or(Failure::InvalidState)?;
                    if current.email != address {
                        return Err(Failure::WrongAccount);
                    }
                    Some(current)
                }
                None => find_by_email(tx, workspace_id, address).await?,
            };
            let current_id = current.as_ref().map(|m| m.id);
            let connected =
                mailbox_oauth::find_account(tx, &authorization.provider, address).await?;
            if connected.is_some_and(|(id, _)| Some(id) != current_id)
                || elsewhere(tx, workspace_id, address).await?
            {
                return Err(Failure::AddressInUse);
            }
            let id = match current {
                Some(current) => {
                    let id = current.id;
                    let imap_before = imap_settings(&current);
                    let mut values = merge(current, &settings.into_update(), None, false)
                        .map_err(Failure::server)?;
                    use_provider(&mut values, provider, address);
                    let updated = db::update(tx, workspace_id, id, &values)
                        .await?
                        .ok_or(Failure::InvalidState)?;
                    if imap_settings(&updated) != imap_before {
                        inbox::forget(tx, id).await?;
                    }
                    id
                }
                None => {
                    let id = Uuid::now_v7();
                    let smtp = SmtpSettings {
                        host: provider.smtp_host.clone(),
                        port: provider.smtp_port,
                        security: provider.smtp_security.into(),
                        username: None,
                        password: None,
                    };
                    let create = settings.into_create(address, smtp);
                    let mut values = new_values(id, &create, None).map_err(Failure::server)?;
                    use_provider(&mut values, provider, address);
                    db::insert(
                        tx,
                        &db::NewMailbox {
                            id,
                            workspace_id,
                            values,
                        },
                    )
                    .await?;
                    id
                }
            };
            let grant = grant(
                cipher,
                id,
                &authorization.provider,
                provider,
                tokens,
                refresh_token,
                address,
                now,
            )?;
            mailbox_oauth::upsert(tx, &grant)
                .await
                .map_err(|error| match &error {
                    DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
                        if info.constraint_name() == Some(ACCOUNT_INDEX) =>
                    {
                        Failure::AddressInUse
                    }
                    _ => error.into(),
                })?;
            Ok(id)
        })
        .await?;
    Ok(Connection {
        workspace_id,
        mailbox_id,
    })
}

/// The workspace's mailbox with `address`, locked.
async fn find_by_email(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    address: &str,
) -> QueryResult<Option<db::Mailbox>> {
    mailboxes::table
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .filter(mailboxes::email.eq(address))
        .select(db::Mailbox::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Whether a mailbox of another workspace has `address`: a workspace cannot take over an
/// address another one sends from, with a password or not.
async fn elsewhere(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    address: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        mailboxes::table
            .filter(mailboxes::workspace_id.ne(workspace_id))
            .filter(mailboxes::email.eq(address)),
    ))
    .get_result(conn)
    .await
}

/// The provider's servers, logged in to as `address` with XOAUTH2 (no password). A mailbox
/// that could not log in (`error`, `reconnect_required`) can now; `paused` and `disabled`,
/// the client's choices, stay.
fn use_provider(values: &mut MailboxValues, provider: &OAuthProviderConfig, address: &str) {
    values.smtp_host = provider.smtp_host.clone();
    values.smtp_port = provider.smtp_port.into();
    values.smtp_security = provider.smtp_security.as_str().to_owned();
    values.smtp_username = Some(address.to_owned());
    values.smtp_password_encrypted = None;
    values.imap_host = Some(provider.imap_host.clone());
    values.imap_port = Some(provider.imap_port.into());
    values.imap_security = Some(provider.imap_security.as_str().to_owned());
    values.imap_username = Some(address.to_owned());
    values.imap_password_encrypted = None;
    if values.status == status::ERROR || values.status == status::RECONNECT_REQUIRED {
        values.status = status::ACTIVE.to_owned();
        values.status_reason = None;
    }
}

#[allow(clippy::too_many_arguments)]
fn grant(
    cipher: &SecretCipher,
    mailbox_id: Uuid,
    provider_name: &str,
    provider: &OAuthProviderConfig,
    tokens: &Tokens,
    refresh_token: &SecretString,
    address: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewGrant, Failure> {
    let refresh_token_encrypted = cipher
        .encrypt(refresh_token, &refresh_token_context(mailbox_id))
        .map_err(Failure::server)?;
    let access_token_encrypted = cipher
        .encrypt(&tokens.access_token, &access_token_context(mailbox_id))
        .map_err(Failure::server)?;
    Ok(NewGrant {
        mailbox_id,
        provider: provider_name.to_owned(),
        connected_email: address.to_owned(),
        scopes: tokens
            .scopes
            .clone()
            .unwrap_or_else(|| provider.scopes.clone()),
        refresh_token_encrypted,
        access_token_encrypted: Some(access_token_encrypted),
        access_token_expires_at: tokens.expires_at,
        refreshed_at: Some(now),
    })
}
