//! `POST /sequences/{id}/contacts`: the seed's "add contacts to sequence". Contacts come as
//! data (upserted by email) and/or as ids; each one is enrolled or skipped with a reason.
//! Set-based throughout: a 100,000-contact request is a handful of statements.

use std::collections::{HashMap, HashSet};

use chrono::{TimeDelta, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::db::contacts::ContactUpsert;
use paperclip::actix::{Apiv2Schema, CreatedJson, api_v2_operation, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::contacts::{BatchItem, ContactInput, normalise};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::state::AppState;

/// Most contacts (data and ids together) in one request.
pub const MAX_ENROLL: usize = 100_000;
/// Rows per statement: large enough to be fast, small enough for PostgreSQL's bind limits.
const CHUNK: usize = 10_000;

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct EnrollContacts {
    /// Contacts by their data, created or updated by email like `POST /contacts` does.
    #[serde(default)]
    pub contacts: Vec<BatchItem>,
    /// Existing contacts of this workspace.
    #[serde(default)]
    pub contact_ids: Vec<Uuid>,
}

impl Validate for EnrollContacts {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let total = self.contacts.len() + self.contact_ids.len();
        if total == 0 {
            return Err(vec![FieldError::new(
                "contacts",
                "give `contacts` and/or `contact_ids`",
            )]);
        }
        if total > MAX_ENROLL {
            return Err(vec![FieldError::new(
                "contacts",
                format!("at most {MAX_ENROLL} contacts per request, counting contact_ids"),
            )]);
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Skipped {
    pub email: Option<String>,
    pub contact_id: Option<Uuid>,
    /// already_enrolled, suppressed, unsubscribed or invalid.
    pub reason: String,
    /// What was wrong, for `invalid`.
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct EnrollResult {
    pub contacts_added: usize,
    pub skipped: Vec<Skipped>,
}

impl Skipped {
    fn new(email: Option<String>, contact_id: Option<Uuid>, reason: &str) -> Self {
        Self {
            email,
            contact_id,
            reason: reason.to_owned(),
            detail: None,
        }
    }
}

/// Add contacts to a sequence
///
/// Body: `{"contacts": [{email, first_name, last_name, company, ...}]}` and/or
/// `{"contact_ids": [...]}`, up to 100,000 in all. Each contact is enrolled, or listed in
/// `skipped` with a reason: `already_enrolled`, `suppressed` (the address or its domain is on
/// the suppression list, or it bounced or complained), `unsubscribed` or `invalid` (bad data,
/// or an id that is not this workspace's). Enrolled contacts start at the first step as soon
/// as the sequence is active and its sending window allows. Archived sequences take none (409).
#[api_v2_operation(tags(Enrollments))]
pub(super) async fn enroll(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<EnrollContacts>,
) -> Result<CreatedJson<EnrollResult>, ApiError> {
    let body = body.into_inner();
    let sequence_id = id.into_inner();
    let mut conn = state.pool.get().await?;
    let result = conn
        .transaction(async |tx| -> Result<EnrollResult, ApiError> {
            enroll_in(tx, caller.workspace_id, sequence_id, body).await
        })
        .await?;
    tracing::info!(
        workspace.id = %caller.workspace_id,
        sequence.id = %sequence_id,
        added = result.contacts_added,
        skipped = result.skipped.len(),
        "contacts enrolled"
    );
    Ok(CreatedJson(result))
}

async fn enroll_in(
    tx: &mut AsyncPgConnection,
    workspace_id: Uuid,
    sequence_id: Uuid,
    body: EnrollContacts,
) -> Result<EnrollResult, ApiError> {
    let sequence = domain::db::sequences::lock(tx, workspace_id, sequence_id)
        .await?
        .ok_or(ApiError::NotFound("sequence"))?;
    if sequence.status == "archived" {
        return Err(ApiError::Conflict(
            "archived sequences take no new contacts".to_owned(),
        ));
    }
    // Contacts given as data: validated on a blocking thread while this connection upserts
    // the chunks already validated, so parsing each item costs the request no time of its own.
    let (chunks, mut validated) = tokio::sync::mpsc::channel(2);
    let items = body.contacts;
    let validation = tokio::task::spawn_blocking(move || validate_in_chunks(items, &chunks));
    // Everything to enroll, by id, with what decides whether it may be: the upsert returns it.
    let mut candidates: Vec<domain::db::contacts::ContactKey> = Vec::new();
    while let Some(chunk) = validated.recv().await {
        let written = domain::db::contacts::upsert_many_keys(tx, workspace_id, &chunk).await?;
        if written.len() < chunk.len() {
            // A contact this transaction's snapshot saw updated at `now()` is not returned by
            // the upsert (see its first-write-wins rule): look those up.
            let returned: HashSet<&str> = written.iter().map(|k| k.email.as_str()).collect();
            let missing: Vec<String> = chunk
                .iter()
                .filter(|u| !returned.contains(u.email.as_str()))
                .map(|u| u.email.clone())
                .collect();
            candidates.extend(domain::db::contacts::keys(tx, workspace_id, &missing, &[]).await?);
        }
        candidates.extend(written);
    }
    let mut skipped = validation.await.map_err(ApiError::internal)?;

    let wanted_ids: Vec<Uuid> = body
        .contact_ids
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let by_id: HashMap<Uuid, domain::db::contacts::ContactKey> = {
        let mut found = HashMap::new();
        for chunk in wanted_ids.chunks(CHUNK) {
            for key in domain::db::contacts::keys(tx, workspace_id, &[], chunk).await? {
                found.insert(key.id, key);
            }
        }
        found
    };
    let mut candidate_ids: HashSet<Uuid> = candidates.iter().map(|c| c.id).collect();
    for id in &wanted_ids {
        match by_id.get(id) {
            Some(key) if candidate_ids.insert(key.id) => candidates.push(key.clone()),
            Some(_) => {}
            None => skipped.push(Skipped {
                detail: Some("no such contact in this workspace".to_owned()),
                ..Skipped::new(None, Some(*id), "invalid")
            }),
        }
    }

    let candidate_emails: Vec<String> = candidates.iter().map(|c| c.email.clone()).collect();
    let mut suppressed = HashSet::new();
    for chunk in candidate_emails.chunks(CHUNK) {
        suppressed
            .extend(domain::db::suppressions::suppressed_among(tx, workspace_id, chunk).await?);
    }
    let mut eligible = Vec::with_capacity(candidates.len());
    for contact in &candidates {
        let reason = match contact.status.as_str() {
            _ if suppressed.contains(&contact.email) => Some("suppressed"),
            "unsubscribed" => Some("unsubscribed"),
            "bounced" | "complained" => Some("suppressed"),
            _ => None,
        };
        match reason {
            Some(reason) => skipped.push(Skipped::new(
                Some(contact.email.clone()),
                Some(contact.id),
                reason,
            )),
            None => eligible.push(contact.id),
        }
    }

    let steps = domain::db::steps::live_for(tx, &[sequence_id]).await?;
    let (first_step, wait) = steps.first().map_or((1, TimeDelta::zero()), |s| {
        (
            s.step_order,
            TimeDelta::days(i64::from(s.wait_days))
                + TimeDelta::hours(i64::from(s.wait_hours))
                + TimeDelta::minutes(i64::from(s.wait_minutes)),
        )
    });
    let next_send_at = Utc::now() + wait;
    let mut added: HashSet<Uuid> = HashSet::with_capacity(eligible.len());
    for chunk in eligible.chunks(CHUNK) {
        added.extend(
            domain::db::enrollments::insert_many(
                tx,
                workspace_id,
                sequence_id,
                chunk,
                first_step,
                next_send_at,
            )
            .await?,
        );
    }
    let eligible: HashSet<Uuid> = eligible.into_iter().collect();
    for contact in candidates
        .iter()
        .filter(|c| eligible.contains(&c.id) && !added.contains(&c.id))
    {
        skipped.push(Skipped::new(
            Some(contact.email.clone()),
            Some(contact.id),
            "already_enrolled",
        ));
    }
    Ok(EnrollResult {
        contacts_added: added.len(),
        skipped,
    })
}

/// Validates and normalises the contacts given as data, in order, handing the valid ones on in
/// chunks of [`CHUNK`]; returns the invalid ones. The same address twice is one contact (its
/// first occurrence). Stops early when the receiver is gone (the request failed).
fn validate_in_chunks(
    items: Vec<BatchItem>,
    chunks: &tokio::sync::mpsc::Sender<Vec<ContactUpsert>>,
) -> Vec<Skipped> {
    let mut invalid = Vec::new();
    let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
    let mut chunk: Vec<ContactUpsert> = Vec::with_capacity(CHUNK.min(items.len()));
    for item in items {
        let email_hint = item
            .0
            .get("email")
            .and_then(|e| e.as_str())
            .map(str::to_owned);
        let prepared = crate::extract::from_value::<ContactInput>(item.0)
            .map_err(|e| format!("{}: {}", e.field, e.message))
            .and_then(|input| {
                normalise(&input).map_err(|errors| {
                    errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            });
        match prepared {
            Ok(contact) if seen.insert(contact.email.clone()) => {
                chunk.push(contact);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if chunks.blocking_send(full).is_err() {
                        return invalid;
                    }
                }
            }
            Ok(_) => {}
            Err(detail) => invalid.push(Skipped {
                detail: Some(detail),
                ..Skipped::new(email_hint, None, "invalid")
            }),
        }
    }
    if !chunk.is_empty() {
        // A closed channel means the request failed: nothing is waiting for this chunk.
        let _ = chunks.blocking_send(chunk);
    }
    invalid
}
