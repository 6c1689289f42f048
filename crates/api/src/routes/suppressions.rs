//! `/api/v1/suppressions`: addresses and whole domains the workspace never emails.

use chrono::{DateTime, Utc};
use domain::db::suppressions::{self as db, NewSuppression, SuppressionFilter};
use paperclip::actix::{Apiv2Schema, NoContent, api_v2_operation, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::pagination::{Page, PageRequest};
use crate::respond::Saved;
use crate::state::AppState;
use crate::validation::{self, Checks};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/suppressions")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/suppressions/{id}").route(web::delete().to(delete)));
}

/// An address or a whole domain to suppress: exactly one of `email` and `domain`.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CreateSuppression {
    /// An address (trimmed, lower-cased).
    pub email: Option<String>,
    /// A whole domain such as example.com (a leading @ is allowed): every address whose part
    /// after the @ is exactly this domain. Subdomains are not included.
    pub domain: Option<String>,
    /// unsubscribed, bounced, complained or manual (the default).
    pub reason: Option<String>,
}

impl Validate for CreateSuppression {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        match (&self.email, &self.domain) {
            (Some(email), None) => checks.email("email", email),
            (None, Some(domain)) => {
                if let Err(message) = validation::normalise_domain(domain) {
                    checks.fail("domain", message);
                }
            }
            (Some(_), Some(_)) => checks.fail("domain", "give either email or domain, not both"),
            (None, None) => checks.fail("email", "email or domain is required"),
        }
        if let Some(reason) = &self.reason {
            checks.check(
                db::REASONS.contains(&reason.as_str()),
                "reason",
                format!("must be one of {}", db::REASONS.join(", ")),
            );
        }
        checks.finish()
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Suppression {
    pub id: Uuid,
    /// The suppressed address; null for a domain entry.
    pub email: Option<String>,
    /// The suppressed domain; null for an address entry.
    pub domain: Option<String>,
    /// unsubscribed, bounced, complained or manual.
    pub reason: String,
    /// Who added it: `api` for this endpoint; the system names its own sources.
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<db::Suppression> for Suppression {
    fn from(s: db::Suppression) -> Self {
        let (email, domain) = match db::domain_of_entry(&s.email) {
            Some(domain) => (None, Some(domain.to_owned())),
            None => (Some(s.email), None),
        };
        Self {
            id: s.id,
            email,
            domain,
            reason: s.reason,
            source: s.source,
            created_at: s.created_at,
        }
    }
}

/// Suppress an address or a domain
///
/// `{"email": "jane@example.com"}` or `{"domain": "example.com"}`, with an optional `reason`
/// (default `manual`). A suppressed address is never enrolled and never sent to; a domain
/// entry covers every address at exactly that domain. Idempotent: 201 with the new entry, or
/// 200 with the existing one (its reason unchanged) when the workspace already has it.
#[api_v2_operation(tags(Suppressions))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<CreateSuppression>,
) -> Result<Saved<Suppression>, ApiError> {
    let body = body.into_inner();
    let entry = match (&body.email, &body.domain) {
        (Some(email), _) => {
            validation::normalise_email(email).map_err(|m| ApiError::invalid("email", m))?
        }
        (None, Some(domain)) => db::domain_entry(
            &validation::normalise_domain(domain).map_err(|m| ApiError::invalid("domain", m))?,
        ),
        (None, None) => return Err(ApiError::invalid("email", "email or domain is required")),
    };
    let mut conn = state.pool.get().await?;
    let (row, created) = db::insert_or_get(
        &mut conn,
        &NewSuppression {
            id: Uuid::now_v7(),
            workspace_id: caller.workspace_id,
            email: &entry,
            reason: body.reason.as_deref().unwrap_or("manual"),
            source: Some("api"),
        },
    )
    .await?;
    if created {
        tracing::info!(workspace.id = %caller.workspace_id, suppression.id = %row.id, "suppression added");
        Ok(Saved::Created(row.into()))
    } else {
        Ok(Saved::Existing(row.into()))
    }
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionQuery {
    /// Only the entries that suppress this address: its own and its domain's.
    pub email: Option<String>,
    /// Only the entry of exactly this domain.
    pub domain: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List suppressions
///
/// The workspace's entries in creation order, a page at a time (`limit`, then `cursor` = the
/// previous page's `next_cursor`). `email` answers "is this address suppressed, and why":
/// the address's own entry and its domain's.
#[api_v2_operation(tags(Suppressions))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<SuppressionQuery>,
) -> Result<web::Json<Page<Suppression>>, ApiError> {
    let query = query.into_inner();
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = SuppressionFilter {
        matching: query.email.as_deref(),
        domain: query.domain.as_deref(),
    };
    let mut conn = state.pool.get().await?;
    let rows = db::list(
        &mut conn,
        caller.workspace_id,
        filter,
        page.after,
        page.fetch(),
    )
    .await?;
    let (rows, next_cursor) = page.finish(rows, |s| s.id);
    Ok(web::Json(Page {
        data: rows.into_iter().map(Suppression::from).collect(),
        next_cursor,
    }))
}

/// Remove a suppression
///
/// The address (or domain) may be emailed again.
#[api_v2_operation(tags(Suppressions))]
async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let mut conn = state.pool.get().await?;
    if db::delete(&mut conn, caller.workspace_id, id.into_inner()).await? {
        Ok(NoContent)
    } else {
        Err(ApiError::NotFound("suppression"))
    }
}
