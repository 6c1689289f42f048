//! `/api/v1/contacts`: create or update contacts one at a time or in batches (upsert by
//! email), list, read, update and delete them. CSV imports are in `contacts_import`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::db::contacts::{self as db, ContactChanges, ContactFilter, ContactUpsert};
use paperclip::actix::{Apiv2Schema, NoContent, api_v2_operation, web};
use paperclip::v2::models::DefaultSchemaRaw;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::pagination::{Page, PageRequest};
use crate::respond::{Saved, UpsertResponse};
use crate::state::AppState;
use crate::validation::{self, Checks, MAX_TEXT_LEN};

/// Most contacts in one `POST /api/v1/contacts` batch.
pub const MAX_BATCH: usize = 10_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/contacts")
            .route(web::post().to(upsert))
            .route(web::get().to(list)),
    );
    // Before `/contacts/{id}`, which would otherwise take `import` for an id.
    super::contacts_import::configure(cfg);
    cfg.service(
        web::resource("/contacts/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
}

/// A contact to create, or to update when the workspace already has its email.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// Required; trimmed and lower-cased. Identifies the contact within the workspace.
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    /// IANA name such as Europe/Paris; without one, the sequence's timezone applies.
    pub timezone: Option<String>,
    /// Custom template variables `{{key}}`: names match `[A-Za-z_][A-Za-z0-9_]*` and are not
    /// built-ins (email, first_name, last_name, full_name, company, title); values are strings,
    /// numbers or booleans. Merged into the stored ones: given keys overwrite, others stay.
    pub attributes: Option<serde_json::Value>,
}

/// One contact (the fields of `ContactInput`, `email` required) or a batch (`contacts` alone).
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpsertContacts {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    pub timezone: Option<String>,
    pub attributes: Option<serde_json::Value>,
    /// A batch of up to 10,000 contacts, each shaped like `ContactInput`. Invalid ones are
    /// listed in the response's `rejected` and the others stored.
    pub contacts: Option<Vec<BatchItem>>,
}

/// An item of a batch, kept as JSON so that one bad item rejects itself, not the batch.
#[derive(Debug)]
pub struct BatchItem(pub(crate) serde_json::Value);

impl<'de> Deserialize<'de> for BatchItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self)
    }
}

impl paperclip::v2::schema::Apiv2Schema for BatchItem {
    fn name() -> Option<String> {
        <ContactInput as paperclip::v2::schema::Apiv2Schema>::name()
    }

    fn description() -> &'static str {
        <ContactInput as paperclip::v2::schema::Apiv2Schema>::description()
    }

    fn raw_schema() -> DefaultSchemaRaw {
        <ContactInput as paperclip::v2::schema::Apiv2Schema>::raw_schema()
    }
}

impl UpsertContacts {
    fn single(&self) -> ContactInput {
        ContactInput {
            email: self.email.clone().unwrap_or_default(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            company: self.company.clone(),
            title: self.title.clone(),
            timezone: self.timezone.clone(),
            attributes: self.attributes.clone(),
        }
    }
}

impl Validate for UpsertContacts {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        match &self.contacts {
            Some(items) => {
                let single_fields = [
                    ("email", self.email.is_some()),
                    ("first_name", self.first_name.is_some()),
                    ("last_name", self.last_name.is_some()),
                    ("company", self.company.is_some()),
                    ("title", self.title.is_some()),
                    ("timezone", self.timezone.is_some()),
                    ("attributes", self.attributes.is_some()),
                ];
                for (field, present) in single_fields {
                    checks.check(
                        !present,
                        field,
                        "a batch has `contacts` alone; put each contact's fields in it",
                    );
                }
                checks.check(
                    (1..=MAX_BATCH).contains(&items.len()),
                    "contacts",
                    format!("must hold 1 to {MAX_BATCH} contacts"),
                );
            }
            None => match &self.email {
                None => checks.fail("email", "is required (or send a batch as `contacts`)"),
                Some(_) => checks.extend(contact_errors(&self.single())),
            },
        }
        checks.finish()
    }
}

/// Every problem of one contact, with field names.
fn contact_errors(input: &ContactInput) -> Vec<FieldError> {
    let mut checks = Checks::default();
    checks.email("email", &input.email);
    let texts = [
        ("first_name", &input.first_name),
        ("last_name", &input.last_name),
        ("company", &input.company),
        ("title", &input.title),
    ];
    for (field, value) in texts {
        if let Some(value) = value {
            checks.line(field, value, MAX_TEXT_LEN);
        }
    }
    if let Some(timezone) = input.timezone.as_deref().map(str::trim)
        && !timezone.is_empty()
    {
        checks.timezone("timezone", timezone);
    }
    if let Some(attributes) = &input.attributes {
        checks.attributes("attributes", attributes);
    }
    checks.finish().err().unwrap_or_default()
}

/// Trimmed, and `None` when empty.
pub(crate) fn clean(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The validated input as the database takes it.
pub(crate) fn normalise(input: &ContactInput) -> Result<ContactUpsert, Vec<FieldError>> {
    let errors = contact_errors(input);
    if !errors.is_empty() {
        return Err(errors);
    }
    let email = validation::normalise_email(&input.email)
        .map_err(|message| vec![FieldError::new("email", message)])?;
    Ok(ContactUpsert {
        email,
        first_name: clean(input.first_name.as_deref()),
        last_name: clean(input.last_name.as_deref()),
        company: clean(input.company.as_deref()),
        title: clean(input.title.as_deref()),
        timezone: clean(input.timezone.as_deref()),
        attributes: input
            .attributes
            .clone()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
    })
}

#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct Contact {
    pub id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    /// IANA timezone; null means the sequence's timezone applies.
    pub timezone: Option<String>,
    /// Custom template variables (a JSON object).
    pub attributes: serde_json::Value,
    /// active, unsubscribed, bounced or complained; maintained by the system.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<db::Contact> for Contact {
    fn from(c: db::Contact) -> Self {
        Self {
            id: c.id,
            email: c.email,
            first_name: c.first_name,
            last_name: c.last_name,
            company: c.company,
            title: c.title,
            timezone: c.timezone,
            attributes: c.attributes,
            status: c.status,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A batch item that was not stored.
#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct RejectedItem {
    /// 0-based position in `contacts`.
    pub index: usize,
    /// The item's `email` as sent, when it had one.
    pub email: Option<String>,
    pub reason: String,
}

/// What a batch did.
#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct ContactBatchResult {
    /// New contacts.
    pub inserted: u64,
    /// Existing contacts (same email) updated.
    pub updated: u64,
    /// Items not stored, in order, with the reason.
    pub rejected: Vec<RejectedItem>,
}

/// Create or update contacts
///
/// Upserts by email (trimmed and lower-cased; unique within the workspace). The body is either
/// **one contact** (`{"email": ..., "first_name": ..., ...}`), answered with the contact: 201
/// when it is new, 200 when a contact with that email existed and was updated; or **a batch**
/// `{"contacts": [{...}, ...]}` of up to 10,000, answered 200 with `ContactBatchResult`
/// (`inserted`, `updated`, and `rejected` items with their 0-based `index` and a `reason`;
/// valid items are stored whatever the others hold, and a repeated email keeps its first item
/// and rejects the later ones).
///
/// An existing contact gets the fields present in the request; absent, null or empty fields
/// keep their stored values (use PUT to clear one). `attributes` are merged: given keys
/// overwrite, the others stay. `status` is not writable here.
#[api_v2_operation(tags(Contacts))]
async fn upsert(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<UpsertContacts>,
) -> Result<UpsertResponse<Contact, ContactBatchResult>, ApiError> {
    let body = body.into_inner();
    let mut conn = state.pool.get().await?;
    let Some(items) = body.contacts else {
        let row = normalise(&body.single()).map_err(ApiError::Validation)?;
        let (contact, inserted) = db::upsert_one(&mut conn, caller.workspace_id, &row)
            .await?
            .ok_or_else(|| ApiError::Conflict("the contact was written concurrently".into()))?;
        tracing::info!(workspace.id = %caller.workspace_id, contact.id = %contact.id, inserted, "contact upserted");
        let contact = Contact::from(contact);
        return Ok(UpsertResponse::One(if inserted {
            Saved::Created(contact)
        } else {
            Saved::Existing(contact)
        }));
    };

    let mut rows = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    let mut first_index: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (index, BatchItem(item)) in items.into_iter().enumerate() {
        let email = item
            .get("email")
            .and_then(|e| e.as_str())
            .map(str::to_owned);
        let parsed = crate::extract::from_value::<ContactInput>(item)
            .map_err(|e| vec![e])
            .and_then(|input| normalise(&input));
        match parsed {
            Ok(row) => match first_index.get(&row.email) {
                Some(first) => rejected.push(RejectedItem {
                    index,
                    email,
                    reason: format!("duplicate email in batch (first at index {first})"),
                }),
                None => {
                    first_index.insert(row.email.clone(), index);
                    rows.push(row);
                }
            },
            Err(errors) => rejected.push(RejectedItem {
                index,
                email,
                reason: errors
                    .iter()
                    .map(|e| match e.field.as_str() {
                        // The item itself is not an object of the right shape.
                        "body" => format!("item: {}", e.message),
                        field => format!("{field}: {}", e.message),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
    let outcomes = db::upsert_many(&mut conn, caller.workspace_id, &rows).await?;
    let inserted = outcomes.iter().filter(|o| o.inserted).count() as u64;
    let updated = outcomes.len() as u64 - inserted;
    tracing::info!(
        workspace.id = %caller.workspace_id,
        inserted,
        updated,
        rejected = rejected.len(),
        "contact batch upserted"
    );
    Ok(UpsertResponse::Batch(ContactBatchResult {
        inserted,
        updated,
        rejected,
    }))
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ContactQuery {
    /// Only the contact with this address (compared trimmed and lower-cased).
    pub email: Option<String>,
    /// Only contacts with this status: active, unsubscribed, bounced or complained.
    pub status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List contacts
///
/// The workspace's contacts in creation order, a page at a time (`limit`, then `cursor` =
/// the previous page's `next_cursor`), optionally filtered by `email` and `status`.
#[api_v2_operation(tags(Contacts))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<ContactQuery>,
) -> Result<web::Json<Page<Contact>>, ApiError> {
    let query = query.into_inner();
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    crate::pagination::check_status_filter(query.status.as_deref(), &db::STATUSES)?;
    let email = query.email.as_deref().map(|e| e.trim().to_lowercase());
    let filter = ContactFilter {
        email: email.as_deref(),
        status: query.status.as_deref(),
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
    let (rows, next_cursor) = page.finish(rows, |c| c.id);
    Ok(web::Json(Page {
        data: rows.into_iter().map(Contact::from).collect(),
        next_cursor,
    }))
}

/// Get a contact
#[api_v2_operation(tags(Contacts))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Contact>, ApiError> {
    let mut conn = state.pool.get().await?;
    db::find(&mut conn, caller.workspace_id, id.into_inner())
        .await?
        .map(|c| web::Json(c.into()))
        .ok_or(ApiError::NotFound("contact"))
}

/// Deserialises a present field, null included, as `Some`; an absent one defaults to `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Changes to a contact: absent fields stay as they are.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContact {
    /// A new address; must not belong to another contact of the workspace (409).
    pub email: Option<String>,
    /// null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    pub first_name: Option<Option<String>>,
    /// null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    pub last_name: Option<Option<String>>,
    /// null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    pub company: Option<Option<String>>,
    /// null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    pub title: Option<Option<String>>,
    /// IANA name; null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    pub timezone: Option<Option<String>>,
    /// Replaces all attributes (null: none). Same rules as on creation.
    #[serde(default, deserialize_with = "present")]
    pub attributes: Option<Option<serde_json::Value>>,
}

impl Validate for UpdateContact {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        if let Some(email) = &self.email {
            checks.email("email", email);
        }
        let texts = [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("company", &self.company),
            ("title", &self.title),
        ];
        for (field, value) in texts {
            if let Some(Some(value)) = value {
                checks.line(field, value, MAX_TEXT_LEN);
            }
        }
        if let Some(Some(timezone)) = &self.timezone
            && !timezone.trim().is_empty()
        {
            checks.timezone("timezone", timezone.trim());
        }
        if let Some(Some(attributes)) = &self.attributes {
            checks.attributes("attributes", attributes);
        }
        checks.finish()
    }
}

/// Update a contact
///
/// A partial update: only the fields present change. `first_name`, `last_name`, `company`,
/// `title` and `timezone` are cleared by null or "". `attributes`, when present, replaces the
/// whole set (unlike the merge of `POST /contacts`), so this is how attributes are removed.
/// Changing `email` to one another contact of the workspace has is a 409.
#[api_v2_operation(tags(Contacts))]
async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<UpdateContact>,
) -> Result<web::Json<Contact>, ApiError> {
    let body = body.into_inner();
    let email = body
        .email
        .as_deref()
        .map(validation::normalise_email)
        .transpose()
        .map_err(|message| ApiError::invalid("email", message))?;
    let trimmed = |value: &Option<Option<String>>| -> Option<Option<String>> {
        value.as_ref().map(|v| clean(v.as_deref()))
    };
    let first_name = trimmed(&body.first_name);
    let last_name = trimmed(&body.last_name);
    let company = trimmed(&body.company);
    let title = trimmed(&body.title);
    let timezone = trimmed(&body.timezone);
    let attributes = body.attributes.as_ref().map(|a| {
        a.clone()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
    });
    let changes = ContactChanges {
        email: email.as_deref(),
        first_name: first_name.as_ref().map(Option::as_deref),
        last_name: last_name.as_ref().map(Option::as_deref),
        company: company.as_ref().map(Option::as_deref),
        title: title.as_ref().map(Option::as_deref),
        timezone: timezone.as_ref().map(Option::as_deref),
        attributes: attributes.as_ref(),
    };
    let mut conn = state.pool.get().await?;
    match db::update(&mut conn, caller.workspace_id, id.into_inner(), &changes).await {
        Ok(Some(contact)) => Ok(web::Json(contact.into())),
        Ok(None) => Err(ApiError::NotFound("contact")),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(ApiError::Conflict(
            "another contact of this workspace has that email".into(),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Delete a contact
///
/// Deletes the contact with its enrollments and their messages. Suppressions of its address
/// stay.
#[api_v2_operation(tags(Contacts))]
async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let mut conn = state.pool.get().await?;
    if db::delete(&mut conn, caller.workspace_id, id.into_inner()).await? {
        Ok(NoContent)
    } else {
        Err(ApiError::NotFound("contact"))
    }
}
