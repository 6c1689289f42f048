//! `POST /api/v1/contacts/import`: a CSV upload, streamed.
//!
//! The handler reads the body as it arrives, parses it with [`crate::csv_reader`] and turns
//! each row into a contact; every `CHUNK_ROWS` valid rows go over a bounded channel to a writer
//! task that upserts them with one set-based statement, all inside one transaction. So at
//! most two chunks are in memory (one being parsed, one being written), parsing overlaps the
//! database's work, and a file that turns out damaged (400) or too large (413) stores nothing.
//! The writer is a task of its own so that a client hanging up mid-upload still ends the
//! transaction with a rollback rather than leaving it open on a pooled connection.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use diesel_async::AsyncConnection as _;
use domain::db::PgPool;
use domain::db::contacts::{self as db, ContactUpsert};
use futures::StreamExt as _;
use paperclip::actix::{Apiv2Schema, OperationModifier, api_v2_operation, web};
use paperclip::v2::models::{
    DataType, DefaultOperationRaw, DefaultSchemaRaw, Either, Parameter, ParameterIn,
};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::contacts::clean;
use crate::auth::Caller;
use crate::csv_reader::{Reader, Record};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::validation::{self, MAX_ATTRIBUTE_VALUE_LEN, MAX_ATTRIBUTES, MAX_TEXT_LEN};

/// Valid rows per upsert statement.
pub const CHUNK_ROWS: usize = 5_000;
/// Longest CSV record; beyond it the file is taken as damaged.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Rejected rows listed in a response (`rejected_count` has them all).
pub const MAX_LISTED_REJECTS: usize = 10_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/contacts/import").route(web::post().to(import)));
}

/// The raw CSV body of an import, limited to `api.max_import_bytes`.
pub struct CsvUpload {
    payload: Payload,
    limit: usize,
}

impl FromRequest for CsvUpload {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(1 << 20, |s| s.config.max_import_bytes);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let csv = matches!(req.content_type(), "text/csv" | "application/csv");
        let payload = payload.take();
        Box::pin(async move {
            if !csv {
                return Err(ApiError::BadRequest(
                    "the body must be CSV sent with `Content-Type: text/csv`".into(),
                ));
            }
            if declared.is_some_and(|len| len > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            Ok(Self { payload, limit })
        })
    }
}

impl paperclip::v2::schema::Apiv2Schema for CsvUpload {}

impl OperationModifier for CsvUpload {
    fn update_parameter(op: &mut DefaultOperationRaw) {
        op.parameters.push(Either::Right(Parameter {
            description: Some(
                "The CSV file: a header row, then one contact per row (UTF-8, comma-separated)."
                    .into(),
            ),
            in_: ParameterIn::Body,
            name: "body".into(),
            required: true,
            schema: Some(DefaultSchemaRaw {
                data_type: Some(DataType::String),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }

    fn update_definitions(_: &mut std::collections::BTreeMap<String, DefaultSchemaRaw>) {}
}

/// A row that was not stored.
#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct RejectedRow {
    /// Row number as a spreadsheet shows it: the header is row 1, the first contact row 2.
    pub row: u64,
    /// The row's email cell, when it had one.
    pub email: Option<String>,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct ImportResult {
    /// New contacts.
    pub inserted: u64,
    /// Existing contacts (same email) updated.
    pub updated: u64,
    /// Rows not stored.
    pub rejected_count: u64,
    /// The first 10,000 rows not stored, in row order, with the reason.
    pub rejected: Vec<RejectedRow>,
}

/// Where a column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Email,
    FirstName,
    LastName,
    Company,
    Title,
    Timezone,
    Attribute(String),
    Skip,
}

impl Target {
    fn field(name: &str) -> Option<Self> {
        Some(match name {
            "email" => Self::Email,
            "first_name" => Self::FirstName,
            "last_name" => Self::LastName,
            "company" => Self::Company,
            "title" => Self::Title,
            "timezone" => Self::Timezone,
            _ => return None,
        })
    }

    fn label(&self) -> &str {
        match self {
            Self::Email => "email",
            Self::FirstName => "first_name",
            Self::LastName => "last_name",
            Self::Company => "company",
            Self::Title => "title",
            Self::Timezone => "timezone",
            Self::Attribute(key) => key,
            Self::Skip => "-",
        }
    }
}

/// A header name as an identifier: `First Name` and `firstName` give `first_name`.
pub fn snake_case(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut previous: Option<char> = None;
    for c in header.trim().chars() {
        if c.is_ascii_alphanumeric() {
            let boundary = c.is_ascii_uppercase()
                && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        previous = Some(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The query's `map.<column>=<target>` pairs.
fn mapping(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = crate::extract::parse_query(query)?;
    pairs
        .into_iter()
        .map(|(key, value)| match key.strip_prefix("map.") {
            Some(column) => Ok((column.to_owned(), value)),
            None => Err(ApiError::invalid(
                key,
                "unknown query parameter (columns are mapped with map.<column>=<target>)",
            )),
        })
        .collect()
}

/// Column targets from the header row and the mapping.
fn plan(header: &Record, mapping: &[(String, String)]) -> Result<Vec<Target>, ApiError> {
    let mut errors = Vec::new();
    let mut used = vec![false; mapping.len()];
    let mut targets = Vec::with_capacity(header.len());
    for (index, raw) in header.iter().enumerate() {
        let name = match std::str::from_utf8(raw) {
            Ok(name) => name.trim(),
            Err(_) => {
                errors.push(FieldError::new(
                    "header",
                    format!("column {} is not valid UTF-8", index + 1),
                ));
                targets.push(Target::Skip);
                continue;
            }
        };
        let normalised = snake_case(name);
        let mapped = mapping
            .iter()
            .position(|(column, _)| column.trim() == name || snake_case(column) == normalised);
        let target = match mapped {
            Some(i) => {
                used[i] = true;
                let (column, value) = &mapping[i];
                let value = value.trim();
                match value {
                    "-" => Target::Skip,
                    _ => match Target::field(value) {
                        Some(field) => field,
                        None => match validation::check_attribute_key(value) {
                            Ok(()) => Target::Attribute(value.to_owned()),
                            Err(message) => {
                                errors.push(FieldError::new(
                                    format!("map.{column}"),
                                    format!(
                                        "must be email, first_name, last_name, company, title, \
                                         timezone, an attribute name or - to skip: {message}"
                                    ),
                                ));
                                Target::Skip
                            }
                        },
                    },
                }
            }
            None if normalised.is_empty() => Target::Skip,
            None => match Target::field(&normalised) {
                Some(field) => field,
                None => match validation::check_attribute_key(&normalised) {
                    Ok(()) => Target::Attribute(normalised),
                    Err(message) => {
                        errors.push(FieldError::new(
                            "header",
                            format!(
                                "column `{name}` would be attribute `{normalised}`: {message}; \
                                 rename it with map.{name}=<name> or skip it with map.{name}=-"
                            ),
                        ));
                        Target::Skip
                    }
                },
            },
        };
        targets.push(target);
    }
    for ((column, _), used) in mapping.iter().zip(used) {
        if !used {
            errors.push(FieldError::new(
                format!("map.{column}"),
                "no column of the header has that name",
            ));
        }
    }
    let mut seen = HashSet::new();
    for target in targets.iter().filter(|t| **t != Target::Skip) {
        if !seen.insert(target.label()) {
            errors.push(FieldError::new(
                "header",
                format!("two columns map to `{}`", target.label()),
            ));
        }
    }
    if !targets.contains(&Target::Email) {
        errors.push(FieldError::new(
            "header",
            "no column maps to email: name one `email` or map one with map.<column>=email",
        ));
    }
    let attributes = targets
        .iter()
        .filter(|t| matches!(t, Target::Attribute(_)))
        .count();
    if attributes > MAX_ATTRIBUTES {
        errors.push(FieldError::new(
            "header",
            format!("{attributes} attribute columns; at most {MAX_ATTRIBUTES}"),
        ));
    }
    if errors.is_empty() {
        Ok(targets)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// A row as a contact, or the row's email cell and why it cannot be one.
fn convert(targets: &[Target], record: &Record) -> Result<ContactUpsert, (Option<String>, String)> {
    let email_cell = targets
        .iter()
        .position(|t| *t == Target::Email)
        .and_then(|i| record.get(i))
        .map(|cell| String::from_utf8_lossy(cell).trim().to_owned())
        .filter(|cell| !cell.is_empty());
    if record.len() != targets.len() {
        return Err((
            email_cell,
            format!("expected {} fields, found {}", targets.len(), record.len()),
        ));
    }
    let mut problems = Vec::new();
    let mut row = ContactUpsert {
        email: String::new(),
        first_name: None,
        last_name: None,
        company: None,
        title: None,
        timezone: None,
        attributes: serde_json::Value::Null,
    };
    let mut attributes = serde_json::Map::new();
    for (target, cell) in targets.iter().zip(record.iter()) {
        if *target == Target::Skip {
            continue;
        }
        let Ok(text) = std::str::from_utf8(cell) else {
            problems.push(format!("{}: not valid UTF-8", target.label()));
            continue;
        };
        let Some(value) = clean(Some(text)) else {
            continue;
        };
        let checked = match target {
            Target::Attribute(_) => validation::check_text(&value, MAX_ATTRIBUTE_VALUE_LEN),
            _ => validation::check_line(&value, MAX_TEXT_LEN),
        };
        if let Err(message) = checked {
            problems.push(format!("{}: {message}", target.label()));
            continue;
        }
        match target {
            Target::Email => match validation::normalise_email(&value) {
                Ok(email) => row.email = email,
                Err(_) => problems.push("invalid email".to_owned()),
            },
            Target::FirstName => row.first_name = Some(value),
            Target::LastName => row.last_name = Some(value),
            Target::Company => row.company = Some(value),
            Target::Title => row.title = Some(value),
            Target::Timezone => {
                if value.parse::<chrono_tz::Tz>().is_ok() {
                    row.timezone = Some(value);
                } else {
                    problems.push("invalid timezone".to_owned());
                }
            }
            Target::Attribute(key) => {
                attributes.insert(key.clone(), serde_json::Value::String(value));
            }
            Target::Skip => {}
        }
    }
    if email_cell.is_none() {
        problems.insert(0, "missing email".to_owned());
    }
    if !problems.is_empty() {
        return Err((email_cell, problems.join("; ")));
    }
    row.attributes = serde_json::Value::Object(attributes);
    Ok(row)
}

/// Rejected rows, counted in full and listed up to [`MAX_LISTED_REJECTS`] (rows arrive in
/// increasing order, so the list holds the first ones).
#[derive(Debug, Default)]
struct Rejects {
    count: u64,
    listed: Vec<RejectedRow>,
}

impl Rejects {
    fn push(&mut self, row: u64, email: Option<String>, reason: impl Into<String>) {
        self.count += 1;
        if self.listed.len() < MAX_LISTED_REJECTS {
            self.listed.push(RejectedRow {
                row,
                email,
                reason: reason.into(),
            });
        }
    }
}

const DUPLICATE: &str = "duplicate email in file";

/// A chunk of valid rows for the writer, or the end of a complete file.
enum Batch {
    Rows(Vec<u64>, Vec<ContactUpsert>),
    Commit,
}

#[derive(Debug, Default)]
struct Written {
    inserted: u64,
    updated: u64,
    /// Rows whose email an earlier chunk of the same file already wrote.
    duplicates: Rejects,
}

/// The writer task: one transaction, one upsert per chunk, committed only on `Commit`.
async fn write(
    pool: PgPool,
    workspace_id: Uuid,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<Written, ApiError> {
    let mut conn = pool.get().await?;
    conn.transaction(async |tx| -> Result<Written, ApiError> {
        let mut written = Written::default();
        while let Some(batch) = batches.recv().await {
            let (rows, contacts) = match batch {
                Batch::Rows(rows, contacts) => (rows, contacts),
                Batch::Commit => return Ok(written),
            };
            let outcomes = db::upsert_many(tx, workspace_id, &contacts).await?;
            let by_email: HashMap<&str, bool> = outcomes
                .iter()
                .map(|o| (o.email.as_str(), o.inserted))
                .collect();
            for (row, contact) in rows.into_iter().zip(&contacts) {
                match by_email.get(contact.email.as_str()) {
                    Some(true) => written.inserted += 1,
                    Some(false) => written.updated += 1,
                    None => written
                        .duplicates
                        .push(row, Some(contact.email.clone()), DUPLICATE),
                }
            }
        }
        // The reader gave up (bad file, or the client went away): roll back.
        Err(ApiError::BadRequest("import abandoned".into()))
    })
    .await
}

/// Reads the upload and sends chunks of valid rows; the rows it rejected itself.
async fn read(
    mut upload: CsvUpload,
    mapping: &[(String, String)],
    batches: &mpsc::Sender<Batch>,
) -> Result<Rejects, ApiError> {
    let mut reader = Reader::new(MAX_RECORD_BYTES);
    let mut rejects = Rejects::default();
    let mut records = Vec::new();
    let mut targets: Option<Vec<Target>> = None;
    let mut rows = Vec::with_capacity(CHUNK_ROWS);
    let mut contacts = Vec::with_capacity(CHUNK_ROWS);
    let mut in_chunk: HashSet<String> = HashSet::with_capacity(CHUNK_ROWS);
    let mut received = 0usize;
    let mut done = false;
    while !done {
        match upload.payload.next().await {
            Some(chunk) => {
                let chunk = chunk
                    .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
                received += chunk.len();
                if received > upload.limit {
                    return Err(ApiError::PayloadTooLarge {
                        limit: upload.limit,
                    });
                }
                reader
                    .feed(&chunk, &mut records)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            }
            None => {
                reader
                    .finish(&mut records)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                done = true;
            }
        }
        for record in records.drain(..) {
            let Some(targets) = &targets else {
                targets = Some(plan(&record, mapping)?);
                continue;
            };
            match convert(targets, &record) {
                Ok(contact) => {
                    if in_chunk.contains(&contact.email) {
                        rejects.push(record.row, Some(contact.email), DUPLICATE);
                    } else {
                        in_chunk.insert(contact.email.clone());
                        rows.push(record.row);
                        contacts.push(contact);
                    }
                }
                Err((email, reason)) => rejects.push(record.row, email, reason),
            }
            if contacts.len() >= CHUNK_ROWS {
                in_chunk.clear();
                let batch = Batch::Rows(
                    std::mem::replace(&mut rows, Vec::with_capacity(CHUNK_ROWS)),
                    std::mem::replace(&mut contacts, Vec::with_capacity(CHUNK_ROWS)),
                );
                if batches.send(batch).await.is_err() {
                    // The writer failed; its error is the answer.
                    return Ok(rejects);
                }
            }
        }
    }
    if targets.is_none() {
        return Err(ApiError::invalid(
            "header",
            "the file is empty: a header row is required",
        ));
    }
    if !contacts.is_empty() {
        let _ = batches.send(Batch::Rows(rows, contacts)).await;
    }
    let _ = batches.send(Batch::Commit).await;
    Ok(rejects)
}

/// Import contacts from CSV
///
/// The body is a CSV file (`Content-Type: text/csv`, UTF-8, comma-separated, RFC 4180 quoting)
/// of at most `api.max_import_bytes` (413 beyond), streamed rather than loaded whole. A header
/// row is required. Header names are normalised to snake_case (`First Name` and `firstName`
/// give `first_name`); columns named email, first_name, last_name, company, title and
/// timezone fill those fields, every other column becomes an attribute of that name (blank
/// headers are skipped). Query parameters `map.<column>=<target>` override this per column,
/// `<column>` being the header as written or normalised and `<target>` a field name, an
/// attribute name, or `-` to skip the column: `?map.E-mail%20Address=email&map.Notes=-`.
///
/// Each row is upserted by email exactly like `POST /contacts`: empty cells keep stored values,
/// attribute columns are merged into the stored attributes, values stay strings. Rows that
/// cannot be stored are listed in `rejected` with their row number (the header is row 1) and a
/// reason: "missing email", "invalid email", "invalid timezone", "expected N fields, found M",
/// or "duplicate email in file" (the first row with an email wins; later ones are rejected).
/// The other rows are stored. A damaged file (a quote left open, text after a closing quote)
/// is a 400 naming the row, and then nothing is stored: the import is one transaction.
#[api_v2_operation(tags(Contacts), consumes = "text/csv")]
async fn import(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    upload: CsvUpload,
) -> Result<web::Json<ImportResult>, ApiError> {
    let mapping = mapping(req.query_string())?;
    let (sender, receiver) = mpsc::channel(1);
    let writer = tokio::spawn(write(state.pool.clone(), caller.workspace_id, receiver));
    let read = read(upload, &mapping, &sender).await;
    drop(sender);
    let written = writer
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("import writer failed: {e}")));
    // A reading error (bad file, too large) explains the writer's rollback; report it first.
    let mut rejects = read?;
    let written = written??;
    let mut rejected = rejects.listed;
    rejected.extend(written.duplicates.listed);
    rejected.sort_by_key(|r| r.row);
    rejected.truncate(MAX_LISTED_REJECTS);
    rejects.count += written.duplicates.count;
    tracing::info!(
        workspace.id = %caller.workspace_id,
        inserted = written.inserted,
        updated = written.updated,
        rejected = rejects.count,
        "contacts imported"
    );
    Ok(web::Json(ImportResult {
        inserted: written.inserted,
        updated: written.updated,
        rejected_count: rejects.count,
        rejected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_snake_case_identifiers() {
        assert_eq!(snake_case(" First Name "), "first_name");
        assert_eq!(snake_case("firstName"), "first_name");
        assert_eq!(snake_case("E-mail"), "e_mail");
        assert_eq!(snake_case("Email"), "email");
        assert_eq!(snake_case("LinkedIn URL"), "linked_in_url");
        assert_eq!(snake_case("2nd phone"), "_2nd_phone");
        assert_eq!(snake_case("  "), "");
        assert_eq!(snake_case("Plan (tier)"), "plan_tier");
    }
}
