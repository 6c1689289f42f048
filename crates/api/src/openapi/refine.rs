//! What the Rust types cannot tell paperclip, per type and operation: the validation's
//! constraints (from the same constants the validation uses, so changing a limit changes
//! both), optional `#[serde(default)]` fields, "one of these fields" rules, enums of the
//! values a column can hold, the CSV import, the health check, the statuses particular to
//! some operations (409, 503) and request examples.
//!
//! Every refinement names a schema, property or operation that must exist: renaming a field
//! or a route without updating this file fails `document()`, and so the drift test.

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};

use super::rules::error_response;
use super::{PREFIX, schema_ref};
use crate::pagination::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::routes::contacts::MAX_BATCH;
use crate::routes::enroll::MAX_ENROLL;
use crate::routes::mailboxes::{
    MAX_DAILY_LIMIT, MAX_FROM_NAME_LEN, MAX_PASSWORD_LEN, MAX_SPACING_SECONDS, MAX_USERNAME_LEN,
};
use crate::routes::sequences::model::{
    DAY_NAMES, MAX_MAILBOXES, MAX_STEP_ORDER, MAX_STEPS, MAX_VARIANT_WEIGHT, MAX_VARIANTS,
    MAX_WAIT_DAYS, MAX_WAIT_HOURS, MAX_WAIT_MINUTES, MIN_STEP_ORDER,
};
use crate::routes::webhooks::MAX_DESCRIPTION_LEN as MAX_WEBHOOK_DESCRIPTION_LEN;
use crate::validation::{
    MAX_ATTRIBUTE_KEY_LEN, MAX_ATTRIBUTE_NUMBER, MAX_ATTRIBUTE_VALUE_LEN, MAX_ATTRIBUTES,
    MAX_EMAIL_LEN, MAX_HOST_LEN, MAX_NAME_LEN, MAX_TEXT_LEN, MAX_URL_LEN,
};

/// Regular expressions of the validation's string rules (ECMA 262 syntax, as JSON Schema
/// uses; also valid for Rust's and Python's engines). Each is tested against the Rust check
/// it mirrors in the tests below.
pub mod patterns {
    /// No control characters (Unicode category Cc), which could inject lines into a mail
    /// header or a protocol command.
    pub const SINGLE_LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
    /// Single-line text that is not blank.
    pub const SINGLE_LINE_NOT_BLANK: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
    /// `validation::normalise_email`: printable ASCII local part without `"(),:;<>[\]@`, and
    /// a domain of at least two labels of letters, digits and inner hyphens.
    pub const EMAIL: &str = concat!(
        r"^[A-Za-z0-9!#$%&'*+./=?^_`{|}~-]{1,64}@",
        r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    );
    /// `validation::normalise_domain` without the leading `@`.
    pub const DOMAIN: &str = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";
    /// The same with the leading `@`.
    pub const AT_DOMAIN: &str = r"^@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";
    /// `Checks::host`: a host name or IP address, no scheme, port or path.
    pub const HOST: &str = r"^[A-Za-z0-9._:\[\]-]+$";
    /// A sequence's tracking domain: letters, digits, dots and hyphens, with a dot.
    pub const TRACKING_DOMAIN: &str = r"^[A-Za-z0-9.-]*\.[A-Za-z0-9.-]*$";
    /// `Checks::http_url`: http(s), no whitespace or control characters (Rust's
    /// `char::is_whitespace` and `char::is_control`, spelt out).
    pub const HTTP_URL: &str = r"^https?://[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$";
    /// `model::parse_time`: chrono's `%H:%M`, which takes one or two digits each.
    pub const TIME: &str = r"^(?:[01]?[0-9]|2[0-3]):[0-5]?[0-9]$";
    /// A cursor: the id of the previous page's last row (empty means the first page).
    pub const CURSOR: &str =
        r"^(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})?$";
    /// An attribute name: an identifier usable as a template variable.
    pub const ATTRIBUTE_KEY: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
    /// A generated webhook signing secret: `whsec_` and the base64 of 32 bytes.
    pub const WEBHOOK_SECRET: &str = r"^whsec_[A-Za-z0-9+/]{43}=$";
}

pub fn apply(doc: &mut Value) -> Result<()> {
    info(doc);
    shared_schemas(doc)?;
    serde_defaults(doc)?;
    workspaces_and_keys(doc)?;
    sequences(doc)?;
    contacts(doc)?;
    suppressions(doc)?;
    mailboxes(doc)?;
    oauth_connections(doc)?;
    messages(doc)?;
    webhooks(doc)?;
    responses(doc)?;
    operations(doc)?;
    write_bodies_are_closed(doc)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Access, failing loudly when a name no longer exists
// ---------------------------------------------------------------------------------------

fn component<'a>(doc: &'a mut Value, name: &str) -> Result<&'a mut Value> {
    doc["components"]["schemas"]
        .get_mut(name)
        .with_context(|| format!("no schema {name}"))
}

fn property<'a>(doc: &'a mut Value, schema: &str, field: &str) -> Result<&'a mut Value> {
    component(doc, schema)?["properties"]
        .get_mut(field)
        .with_context(|| format!("no property {schema}.{field}"))
}

/// Adds `constraints` to a property.
fn constrain(doc: &mut Value, schema: &str, field: &str, constraints: Value) -> Result<()> {
    let target = property(doc, schema, field)?;
    merge(target, constraints)?;
    wrap_ref(target);
    Ok(())
}

/// Adds keys to a schema; a description is appended to the one there.
fn merge(target: &mut Value, constraints: Value) -> Result<()> {
    let (Some(target), Value::Object(constraints)) = (target.as_object_mut(), constraints) else {
        bail!("constraints must be an object, merged into an object");
    };
    for (key, value) in constraints {
        match (key.as_str(), target.get(&key), &value) {
            ("description", Some(Value::String(old)), Value::String(new)) => {
                let joined = format!("{} {new}", old.trim_end());
                target.insert(key, json!(joined));
            }
            _ => {
                target.insert(key, value);
            }
        }
    }
    Ok(())
}

/// OpenAPI 3.0 ignores the siblings of `$ref`: a reference with constraints, a description
/// or `nullable` beside it moves into `allOf`.
fn wrap_ref(target: &mut Value) {
    if let Some(map) = target.as_object_mut()
        && map.len() > 1
        && let Some(reference) = map.remove("$ref")
    {
        map.insert("allOf".into(), json!([{ "$ref": reference }]));
    }
}

/// Replaces a property's schema, keeping its description and nullability.
fn replace(doc: &mut Value, schema: &str, field: &str, mut with: Value) -> Result<()> {
    let target = property(doc, schema, field)?;
    for key in ["description", "nullable"] {
        if let Some(value) = target.get(key) {
            with[key] = value.clone();
        }
    }
    *target = with;
    wrap_ref(target);
    Ok(())
}

/// Takes `nullable` back from a property that is omitted rather than null.
fn not_nullable(doc: &mut Value, schema: &str, field: &str) -> Result<()> {
    let target = property(doc, schema, field)?;
    target.as_object_mut().map(|t| t.remove("nullable"));
    if let Some([only]) = target["allOf"].as_array().map(Vec::as_slice)
        && target.as_object().is_some_and(|t| t.len() == 1)
    {
        *target = only.clone();
    }
    Ok(())
}

/// `#[serde(default)]` fields: optional, though paperclip lists them as required.
fn not_required(doc: &mut Value, schema: &str, fields: &[&str]) -> Result<()> {
    let target = component(doc, schema)?;
    for field in fields {
        if target["properties"].get(field).is_none() {
            bail!("no property {schema}.{field}");
        }
    }
    if let Some(required) = target["required"].as_array_mut() {
        required.retain(|r| !fields.iter().any(|f| r == f));
        if required.is_empty() {
            target.as_object_mut().map(|t| t.remove("required"));
        }
    }
    Ok(())
}

fn operation<'a>(doc: &'a mut Value, method: &str, path: &str) -> Result<&'a mut Value> {
    let full = format!("{}{}", PREFIX.trim_end_matches('/'), path);
    doc["paths"]
        .get_mut(&full)
        .and_then(|item| item.get_mut(method))
        .with_context(|| format!("no operation {} {full}", method.to_uppercase()))
}

fn operation_by_id<'a>(doc: &'a mut Value, id: &str) -> Result<&'a mut Value> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flatten()
        .flat_map(|(_, item)| item.as_object_mut().into_iter().flatten())
        .map(|(_, op)| op)
        .find(|op| op["operationId"] == id)
        .with_context(|| format!("no operation {id}"))
}

/// `null` only: for a field that must be absent (or null) in one branch of a `oneOf`.
fn null_only() -> Value {
    json!({"nullable": true, "enum": [null]})
}

fn name() -> Value {
    json!({"minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": patterns::SINGLE_LINE_NOT_BLANK})
}

/// Text on one line (`validation::check_line`): contact names, company, title.
fn line(max: usize) -> Value {
    json!({"maxLength": max, "pattern": patterns::SINGLE_LINE})
}

fn email() -> Value {
    json!({"pattern": patterns::EMAIL, "maxLength": MAX_EMAIL_LEN})
}

fn template(max: usize, single_line: bool) -> Value {
    let mut schema = json!({
        "maxLength": max,
        "description": "A template: `{{variable}}` or `{variable}` (with an optional \
            `|fallback`), spintax `{a|b}`, `\\{` for a literal brace. Braces that form \
            nothing are an error (422).",
    });
    if single_line {
        schema["pattern"] = json!(patterns::SINGLE_LINE);
    }
    schema
}

fn range(min: i64, max: i64) -> Value {
    json!({"minimum": min, "maximum": max})
}

// ---------------------------------------------------------------------------------------
// The refinements
// ---------------------------------------------------------------------------------------

fn info(doc: &mut Value) {
    doc["info"]["description"] = json!(
        "Campaign authoring: workspaces and keys, sequences and steps, mailboxes, contacts, \
         enrollments, suppressions, stats and webhooks.\n\n\
         Authenticate with `Authorization: Bearer <API key>` (workspace creation: the admin \
         token). Errors use one envelope, `{\"error\": {\"code\", \"message\", \"details\": \
         [{\"field\", \"message\"}]}}`. A 422 means the request is invalid whatever the state \
         of the workspace (this document's constraints, and the rules its descriptions give \
         where JSON Schema cannot express them); a 409 means it is valid but conflicts with \
         the current state (an archived sequence, a duplicate email, a mailbox id the \
         workspace does not have, ...). Write bodies reject unknown fields. Text never \
         contains NUL (U+0000)."
    );
}

/// Schemas several types refer to: IANA timezones and contact attributes.
fn shared_schemas(doc: &mut Value) -> Result<()> {
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .context("no components.schemas")?;
    schemas.insert(
        "Timezone".into(),
        json!({
            "type": "string",
            "description": "An IANA timezone name such as Europe/Paris.",
            "enum": zones,
        }),
    );
    schemas.insert(
        "Attributes".into(),
        json!({
            "type": "object",
            "description": format!(
                "Custom template variables `{{{{name}}}}`: at most {MAX_ATTRIBUTES}; names \
                 match `{}` (at most {MAX_ATTRIBUTE_KEY_LEN} characters) and are not a built-in \
                 variable ({}); values are strings (at most {MAX_ATTRIBUTE_VALUE_LEN} \
                 characters), numbers or booleans. (OpenAPI 3.0 cannot constrain property \
                 names; a bad name is a 422 naming it.)",
                patterns::ATTRIBUTE_KEY,
                domain::templates::CONTACT_FIELDS.join(", "),
            ),
            "maxProperties": MAX_ATTRIBUTES,
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_LEN},
                    {"type": "number", "minimum": -MAX_ATTRIBUTE_NUMBER, "maximum": MAX_ATTRIBUTE_NUMBER},
                    {"type": "boolean"},
                ],
            },
        }),
    );
    Ok(())
}

/// `#[serde(default)]` fields: absent means the default; `null` is refused.
fn serde_defaults(doc: &mut Value) -> Result<()> {
    not_required(
        doc,
        "CreateSequence",
        &[
            "open_tracking_enabled",
            "click_tracking_enabled",
            "steps",
            "mailbox_ids",
        ],
    )?;
    not_required(
        doc,
        "StepInput",
        &[
            "subject",
            "wait_days",
            "wait_hours",
            "wait_minutes",
            "variants",
        ],
    )?;
    not_required(doc, "EnrollContacts", &["contacts", "contact_ids"])?;
    Ok(())
}

fn workspaces_and_keys(doc: &mut Value) -> Result<()> {
    constrain(doc, "CreateWorkspace", "name", name())?;
    constrain(
        doc,
        "CreateWorkspace",
        "tracking_base_url",
        json!({"pattern": patterns::HTTP_URL, "maxLength": MAX_URL_LEN}),
    )?;
    constrain(doc, "CreateApiKey", "name", name())?;
    Ok(())
}

fn sequences(doc: &mut Value) -> Result<()> {
    let tracking_domain = json!({"pattern": patterns::TRACKING_DOMAIN, "maxLength": MAX_HOST_LEN});
    constrain(doc, "CreateSequence", "name", name())?;
    constrain(
        doc,
        "CreateSequence",
        "tracking_domain",
        tracking_domain.clone(),
    )?;
    constrain(
        doc,
        "CreateSequence",
        "steps",
        json!({"maxItems": MAX_STEPS}),
    )?;
    constrain(
        doc,
        "CreateSequence",
        "mailbox_ids",
        json!({"maxItems": MAX_MAILBOXES}),
    )?;
    merge(
        component(doc, "CreateSequence")?,
        json!({"description": "Rules across fields (422): `step_order`s are unique; the step with \
            the lowest `step_order` needs a subject and cannot be `thread_with_previous`; a \
            later step without a subject must be sent in the thread; the window's `start_time` \
            (default 09:00) is before its `end_time` (default 17:00). A mailbox id the \
            workspace does not have is a 409."}),
    )?;

    constrain(doc, "UpdateSequence", "name", name())?;
    constrain(
        doc,
        "UpdateSequence",
        "tracking_domain",
        json!({"anyOf": [tracking_domain, {"maxLength": 0}]}),
    )?;
    constrain(
        doc,
        "UpdateSequence",
        "mailbox_ids",
        json!({"maxItems": MAX_MAILBOXES}),
    )?;
    merge(
        component(doc, "UpdateSequence")?,
        json!({"description": "A window given with both \
            times needs `start_time` before `end_time` (422); one given alone must fit the \
            stored other (409), as must mailbox ids (409)."}),
    )?;

    let time = json!({"pattern": patterns::TIME});
    constrain(
        doc,
        "SendingWindow",
        "days",
        json!({"minItems": 1, "items": {"type": "string", "enum": DAY_NAMES}}),
    )?;
    constrain(doc, "SendingWindow", "start_time", time.clone())?;
    constrain(doc, "SendingWindow", "end_time", time)?;
    replace(doc, "SendingWindow", "timezone", schema_ref("Timezone"))?;

    // step_order is a client's ordering key: 0 or more, unique within the sequence.
    let step_order = json!({"minimum": MIN_STEP_ORDER, "maximum": MAX_STEP_ORDER});
    constrain(doc, "StepInput", "step_order", step_order.clone())?;
    constrain(doc, "UpdateStep", "step_order", step_order)?;
    let max_template = domain::templates::MAX_TEMPLATE_BYTES;
    for schema in ["StepInput", "UpdateStep", "Variant"] {
        constrain(doc, schema, "subject", template(max_template, true))?;
        constrain(doc, schema, "content", template(max_template, false))?;
    }
    for schema in ["StepInput", "UpdateStep"] {
        constrain(doc, schema, "wait_days", range(0, MAX_WAIT_DAYS.into()))?;
        constrain(doc, schema, "wait_hours", range(0, MAX_WAIT_HOURS.into()))?;
        constrain(
            doc,
            schema,
            "wait_minutes",
            range(0, MAX_WAIT_MINUTES.into()),
        )?;
        constrain(doc, schema, "variants", json!({"maxItems": MAX_VARIANTS}))?;
    }
    constrain(
        doc,
        "Variant",
        "weight",
        range(1, MAX_VARIANT_WEIGHT.into()),
    )?;
    merge(
        component(doc, "StepInput")?,
        json!({
            "description": "A step not sent in the thread (`thread_with_previous: false`) needs \
                a subject. Added to a sequence, it needs a subject and cannot be \
                `thread_with_previous` when it becomes the first step (409 when that is because \
                of the steps already there); a `step_order` another step has is a 409.",
            "not": {
                "required": ["thread_with_previous"],
                "properties": {
                    "thread_with_previous": {"enum": [false]},
                    "subject": {"pattern": r"^\s*$"},
                },
            },
        }),
    )?;

    let seed = json!({
        "name": "Welcome Sequence",
        "open_tracking_enabled": true,
        "click_tracking_enabled": true,
        "steps": [
            {"step_order": 0, "subject": "Welcome!", "content": "Hi {name}, welcome!", "wait_days": 0}
        ]
    });
    example(doc, "post", "/sequences", seed)?;
    example(
        doc,
        "put",
        "/sequences/{id}",
        json!({"name": "Welcome Sequence (EU)", "sending_window": {
            "days": ["mon", "tue", "wed", "thu", "fri"], "start_time": "08:30",
            "end_time": "17:30", "timezone": "Europe/Paris"}}),
    )?;
    example(
        doc,
        "post",
        "/sequences/{id}/steps",
        json!({"subject": "", "content": "Hi {{first_name|there}}, any thoughts?",
               "wait_days": 3, "thread_with_previous": true}),
    )?;
    example(
        doc,
        "put",
        "/sequences/{id}/steps/{step_id}",
        json!({"wait_days": 2, "wait_hours": 12}),
    )?;
    example(
        doc,
        "post",
        "/sequences/{id}/contacts",
        json!({"contacts": [{"email": "jane@example.com", "first_name": "Jane",
                              "company": "Example Inc", "attributes": {"plan": "pro"}}],
               "contact_ids": ["01939b8e-6e6a-7cc3-9d3c-2f0e7f3b1a01"]}),
    )?;

    // Enrollments are created by enrolling, and found in the sequence's list.
    let links: Map<String, Value> = [
        "getEnrollment",
        "getEnrollmentEvents",
        "pauseEnrollment",
        "resumeEnrollment",
        "stopEnrollment",
    ]
    .into_iter()
    .map(|id| {
        (
            id.to_owned(),
            json!({
                "operationId": id,
                "parameters": {"id": "$response.body#/data/0/id"},
                "description": "The first enrollment of the page",
            }),
        )
    })
    .collect();
    for id in links.keys() {
        operation_by_id(doc, id)?;
    }
    operation(doc, "get", "/sequences/{id}/contacts")?["responses"]["200"]["links"] =
        Value::Object(links);

    let enroll = component(doc, "EnrollContacts")?;
    let item = batch_item();
    merge(
        &mut enroll["properties"]["contacts"],
        json!({"maxItems": MAX_ENROLL, "items": item}),
    )?;
    merge(
        &mut enroll["properties"]["contact_ids"],
        json!({"maxItems": MAX_ENROLL}),
    )?;
    merge(
        enroll,
        json!({
            "description": format!("`contacts` and/or `contact_ids`, at least one and at most \
                {MAX_ENROLL} in all."),
            "anyOf": [
                {"required": ["contacts"], "properties": {"contacts": {"minItems": 1}}},
                {"required": ["contact_ids"], "properties": {"contact_ids": {"minItems": 1}}},
            ],
        }),
    )?;
    Ok(())
}

/// An item of a batch of contacts: meant to be a `ContactInput`, but any value is taken and
/// one that is not a valid contact is reported in the response instead of failing the batch.
fn batch_item() -> Value {
    json!({
        "description": "A contact (`ContactInput`). An item that is not a valid contact does not \
            fail the request: it is listed with the reason in the response.",
        "anyOf": [schema_ref("ContactInput"), {}],
    })
}

fn contact_fields(doc: &mut Value, schema: &str) -> Result<()> {
    for field in ["first_name", "last_name", "company", "title"] {
        constrain(doc, schema, field, line(MAX_TEXT_LEN))?;
    }
    // Trimmed first; empty means none.
    replace(
        doc,
        schema,
        "timezone",
        json!({"anyOf": [schema_ref("Timezone"), {"type": "string", "maxLength": 0}]}),
    )?;
    replace(doc, schema, "attributes", schema_ref("Attributes"))?;
    Ok(())
}

fn contacts(doc: &mut Value) -> Result<()> {
    constrain(doc, "ContactInput", "email", email())?;
    contact_fields(doc, "ContactInput")?;
    constrain(doc, "UpdateContact", "email", email())?;
    contact_fields(doc, "UpdateContact")?;

    // One contact, or a batch alone.
    constrain(doc, "UpsertContacts", "email", email())?;
    contact_fields(doc, "UpsertContacts")?;
    let single_fields = [
        "email",
        "first_name",
        "last_name",
        "company",
        "title",
        "timezone",
        "attributes",
    ];
    let mut batch_properties: Map<String, Value> = single_fields
        .iter()
        .map(|f| ((*f).to_owned(), null_only()))
        .collect();
    batch_properties.insert("contacts".into(), json!({"type": "array"}));
    let upsert = component(doc, "UpsertContacts")?;
    merge(
        &mut upsert["properties"]["contacts"],
        json!({"minItems": 1, "maxItems": MAX_BATCH, "items": batch_item()}),
    )?;
    merge(
        upsert,
        json!({
            "description": format!("(A batch holds 1 to {MAX_BATCH} items.)"),
            "oneOf": [
                {
                    "title": "One contact",
                    "required": ["email"],
                    "properties": {"email": {"type": "string"}, "contacts": null_only()},
                },
                {
                    "title": "A batch",
                    "required": ["contacts"],
                    "properties": batch_properties,
                },
            ],
        }),
    )?;
    example(
        doc,
        "post",
        "/contacts",
        json!({"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe",
               "company": "Example Inc", "timezone": "America/New_York",
               "attributes": {"plan": "pro", "seats": 12}}),
    )?;
    example(
        doc,
        "put",
        "/contacts/{id}",
        json!({"title": "CTO", "company": null, "attributes": {"plan": "enterprise"}}),
    )?;
    Ok(())
}

fn suppressions(doc: &mut Value) -> Result<()> {
    constrain(doc, "CreateSuppression", "email", email())?;
    constrain(
        doc,
        "CreateSuppression",
        "domain",
        json!({"anyOf": [
            {"pattern": patterns::DOMAIN, "maxLength": MAX_EMAIL_LEN - 2},
            {"pattern": patterns::AT_DOMAIN, "maxLength": MAX_EMAIL_LEN - 1},
        ]}),
    )?;
    constrain(
        doc,
        "CreateSuppression",
        "reason",
        json!({"enum": reasons_or_null()}),
    )?;
    merge(
        component(doc, "CreateSuppression")?,
        json!({"oneOf": [
            {"title": "An address", "required": ["email"],
             "properties": {"email": {"type": "string"}, "domain": null_only()}},
            {"title": "A domain", "required": ["domain"],
             "properties": {"domain": {"type": "string"}, "email": null_only()}},
        ]}),
    )?;
    example(
        doc,
        "post",
        "/suppressions",
        json!({"domain": "competitor.example", "reason": "manual"}),
    )?;
    Ok(())
}

fn reasons_or_null() -> Vec<Value> {
    domain::db::suppressions::REASONS
        .iter()
        .map(|r| json!(r))
        .chain([Value::Null])
        .collect()
}

fn mailboxes(doc: &mut Value) -> Result<()> {
    let host = json!({
        "pattern": patterns::HOST,
        "maxLength": MAX_HOST_LEN,
        "description": "The platform connects to public addresses only: an IP address in a \
            loopback, private, link-local, shared, multicast, documentation or other \
            non-public range (or an IPv4-mapped form of one) is refused (422), and a name that \
            resolves to one fails its check (`refused: resolves to a private address`), \
            unless the operator allows the network (`security.allowed_private_networks`).",
    });
    let port = json!({"minimum": 1});
    let username =
        json!({"minLength": 1, "maxLength": MAX_USERNAME_LEN, "pattern": patterns::SINGLE_LINE});
    let password =
        json!({"minLength": 1, "maxLength": MAX_PASSWORD_LEN, "pattern": patterns::SINGLE_LINE});
    for schema in ["SmtpSettings", "ImapSettings", "SmtpUpdate", "ImapUpdate"] {
        constrain(doc, schema, "host", host.clone())?;
        constrain(doc, schema, "port", port.clone())?;
        constrain(doc, schema, "username", username.clone())?;
        constrain(doc, schema, "password", password.clone())?;
    }
    merge(
        component(doc, "SmtpSettings")?,
        json!({"anyOf": [
            {"title": "With authentication", "required": ["username", "password"],
             "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
            {"title": "Without authentication",
             "properties": {"username": null_only(), "password": null_only()}},
        ]}),
    )?;
    merge(
        component(doc, "SmtpUpdate")?,
        json!({
            "description": "`username: null` removes authentication, so a password cannot come with it. A password without a \
                username (given or stored), or a username without a password (given or \
                stored) is a 409.",
            "not": {"required": ["username", "password"],
                    "properties": {"username": null_only(), "password": {"type": "string"}}},
        }),
    )?;
    merge(
        component(doc, "ImapUpdate")?,
        json!({"description": "Adding IMAP settings to a mailbox without them needs every field (409 otherwise)."}),
    )?;
    let from_name = json!({"minLength": 1, "maxLength": MAX_FROM_NAME_LEN,
                           "pattern": patterns::SINGLE_LINE_NOT_BLANK});
    for schema in ["CreateMailbox", "UpdateMailbox"] {
        constrain(doc, schema, "email", email())?;
    }
    // The settings that are not credentials, also those of an OAuth connection.
    for schema in ["CreateMailbox", "UpdateMailbox", "AuthorizeMailbox"] {
        constrain(doc, schema, "from_name", from_name.clone())?;
        constrain(doc, schema, "daily_limit", range(1, MAX_DAILY_LIMIT))?;
        constrain(
            doc,
            schema,
            "min_interval_seconds",
            range(0, MAX_SPACING_SECONDS),
        )?;
        constrain(doc, schema, "jitter_seconds", range(0, MAX_SPACING_SECONDS))?;
        replace(doc, schema, "timezone", schema_ref("Timezone"))?;
        // Fractions: the reputation guard's thresholds.
        constrain(doc, schema, "max_bounce_rate", range(0, 1))?;
        constrain(doc, schema, "max_complaint_rate", range(0, 1))?;
    }
    constrain(
        doc,
        "WarmupSettings",
        "start_limit",
        range(1, MAX_DAILY_LIMIT),
    )?;
    constrain(
        doc,
        "WarmupSettings",
        "daily_increase",
        range(0, MAX_DAILY_LIMIT),
    )?;
    example(
        doc,
        "post",
        "/mailboxes",
        json!({
            "email": "jane@example.com", "from_name": "Jane Doe",
            "smtp": {"host": "smtp.example.com", "port": 587, "security": "starttls",
                     "username": "jane@example.com", "password": "app-password"},
            "imap": {"host": "imap.example.com", "port": 993, "security": "tls",
                     "username": "jane@example.com", "password": "app-password"},
            "daily_limit": 40, "timezone": "Europe/Paris",
            "warmup": {"enabled": true, "start_limit": 5, "daily_increase": 2}
        }),
    )?;
    example(
        doc,
        "put",
        "/mailboxes/{id}",
        json!({"daily_limit": 60, "smtp": {"password": "new-app-password"}, "status": "active"}),
    )?;
    Ok(())
}

/// Connecting mailboxes with OAuth (the settings of `AuthorizeMailbox` are constrained with
/// those of `CreateMailbox`); the callback answers a browser (a redirect or an HTML page).
fn oauth_connections(doc: &mut Value) -> Result<()> {
    constrain(doc, "AuthorizeMailbox", "login_hint", email())?;
    for schema in ["AuthorizeMailbox", "ReconnectMailbox"] {
        constrain(
            doc,
            schema,
            "return_url",
            json!({"format": "uri", "maxLength": 2048, "pattern": "^https?://[^\\s]+$"}),
        )?;
    }
    let providers = domain::config::OAuthConfig::PROVIDER_NAMES;
    let authorize = operation(doc, "post", "/mailboxes/oauth/{provider}/authorize")?;
    for parameter in authorize["parameters"].as_array_mut().into_iter().flatten() {
        if parameter["name"] == "provider" {
            parameter["schema"]["enum"] = json!(providers);
            parameter["description"] = json!(
                "`google` or `microsoft`; one the server has not enabled is a 422 naming \
                 `provider`."
            );
        }
    }
    example(
        doc,
        "post",
        "/mailboxes/oauth/{provider}/authorize",
        json!({"from_name": "Jane Doe", "daily_limit": 40, "timezone": "Europe/Paris",
               "login_hint": "jane@example.com",
               "return_url": "https://app.example.com/mailboxes"}),
    )?;
    example(
        doc,
        "post",
        "/mailboxes/{id}/oauth/reconnect",
        json!({"return_url": "https://app.example.com/mailboxes"}),
    )?;
    operation(doc, "post", "/mailboxes/{id}/oauth/reconnect")?["requestBody"]["required"] =
        json!(false);
    let callback = operation(doc, "get", "/oauth/callback")?;
    let html = json!({"text/html": {"schema": {"type": "string",
        "description": "A small HTML page saying what happened."}}});
    callback["responses"]["200"] = json!({
        "description": "Connected, without a `return_url`: a page saying so",
        "content": html.clone(),
    });
    callback["responses"]["303"] = json!({
        "description": "To the request's `return_url`, with `mailbox_id` and \
            `status=connected`, or `error`, added to its query",
        "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
    });
    callback["responses"]["400"]["description"] = json!(
        "The connection failed and there is no `return_url` to send the browser to (an HTML \
         page with the reason), or a query string that does not parse (`bad_request`)"
    );
    callback["responses"]["400"]["content"]["text/html"] = html["text/html"].clone();
    Ok(())
}

fn messages(doc: &mut Value) -> Result<()> {
    let resolutions = domain::db::messages::RESOLUTIONS;
    constrain(
        doc,
        "ResolveMessage",
        "outcome",
        json!({"enum": resolutions}),
    )?;
    let or_null: Vec<Value> = resolutions
        .iter()
        .map(|r| json!(r))
        .chain([Value::Null])
        .collect();
    constrain(
        doc,
        "Message",
        "resolution",
        json!({"enum": or_null.clone()}),
    )?;
    constrain(doc, "TimelineEvent", "outcome", json!({"enum": or_null}))?;
    example(
        doc,
        "post",
        "/messages/{id}/resolve",
        json!({"outcome": "not_sent"}),
    )?;
    Ok(())
}

fn webhooks(doc: &mut Value) -> Result<()> {
    let names = domain::webhooks::event_types::ALL;
    let url = json!({
        "format": "uri",
        "pattern": patterns::HTTP_URL,
        "maxLength": MAX_URL_LEN,
        "description": "A host given as an IP address that is not public is refused (422) \
            unless the operator allows its network; a name is judged when a delivery \
            resolves it.",
    });
    let event_types = json!({
        "items": {"type": "string", "enum": names},
        "uniqueItems": true,
        "maxItems": names.len(),
    });
    for schema in ["CreateWebhook", "UpdateWebhook"] {
        constrain(doc, schema, "url", url.clone())?;
        constrain(doc, schema, "event_types", event_types.clone())?;
        constrain(
            doc,
            schema,
            "description",
            json!({"maxLength": MAX_WEBHOOK_DESCRIPTION_LEN}),
        )?;
    }
    not_required(doc, "CreateWebhook", &["event_types"])?;
    not_nullable(doc, "CreateWebhook", "event_types")?;
    for schema in ["Webhook", "CreatedWebhook"] {
        constrain(
            doc,
            schema,
            "event_types",
            json!({"items": {"type": "string", "enum": names}}),
        )?;
    }
    for schema in ["CreatedWebhook", "RotatedSecret"] {
        constrain(
            doc,
            schema,
            "secret",
            json!({"pattern": patterns::WEBHOOK_SECRET}),
        )?;
    }
    deliveries(doc)?;
    example(
        doc,
        "post",
        "/webhooks",
        json!({"url": "https://crm.example.com/hooks/sequences",
               "event_types": ["contact.replied", "contact.unsubscribed", "message.bounced"],
               "description": "CRM sync"}),
    )?;
    example(
        doc,
        "put",
        "/webhooks/{id}",
        json!({"event_types": [], "enabled": true}),
    )?;
    Ok(())
}

/// An endpoint's deliveries: their statuses and event types, the body sent, the filters
/// and the replay's `since`.
fn deliveries(doc: &mut Value) -> Result<()> {
    let names = domain::webhooks::event_types::ALL;
    constrain(
        doc,
        "WebhookDelivery",
        "status",
        json!({"enum": domain::db::webhook_deliveries::STATUSES}),
    )?;
    constrain(doc, "WebhookDelivery", "event_type", json!({"enum": names}))?;
    constrain(doc, "WebhookDelivery", "attempts", json!({"minimum": 0}))?;
    replace(
        doc,
        "WebhookDelivery",
        "payload",
        json!({
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"type": "string", "enum": names},
                "timestamp": {"type": "string", "format": "date-time",
                              "description": "When the event occurred."},
                "data": {"type": "object", "additionalProperties": true,
                         "description": "What the event type carries."},
            },
        }),
    )?;
    let list = operation(doc, "get", "/webhooks/{id}/deliveries")?;
    for parameter in list["parameters"].as_array_mut().into_iter().flatten() {
        if parameter["name"] == "event_type" {
            parameter["schema"] = json!({"type": "string", "enum": names});
        }
    }
    let replay = operation(doc, "post", "/webhooks/{id}/replay")?;
    let since = replay["parameters"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "since")
        .context("no parameter since of POST /webhooks/{id}/replay")?;
    since["required"] = json!(true);
    since["schema"] = json!({"type": "string", "format": "date-time"});
    Ok(())
}

/// What responses hold beyond their Rust types.
fn responses(doc: &mut Value) -> Result<()> {
    // Skipped when None rather than written as null.
    not_nullable(doc, "CheckResult", "error")?;
    replace(doc, "Contact", "attributes", schema_ref("Attributes"))?;
    for (schema, field, values) in [
        ("Sequence", "status", &domain::db::sequences::STATUSES[..]),
        (
            "Enrollment",
            "status",
            &domain::db::enrollments::STATUSES[..],
        ),
        ("Message", "status", &domain::db::messages::STATUSES[..]),
        ("Contact", "status", &domain::db::contacts::STATUSES[..]),
        (
            "Suppression",
            "reason",
            &domain::db::suppressions::REASONS[..],
        ),
    ] {
        constrain(doc, schema, field, json!({"enum": values}))?;
    }
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .context("no components.schemas")?;
    schemas.insert(
        "HealthCheck".into(),
        json!({
            "type": "object",
            "required": ["ok"],
            "properties": {
                "ok": {"type": "boolean"},
                "reason": {"type": "string", "description": "Why the check failed."},
            },
        }),
    );
    schemas.insert(
        "Readiness".into(),
        json!({
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "checks": {
                    "type": "object",
                    "required": ["database", "kafka"],
                    "properties": {
                        "database": schema_ref("HealthCheck"),
                        "kafka": schema_ref("HealthCheck"),
                    },
                },
            },
        }),
    );
    let health = operation(doc, "get", "/health")?;
    let readiness = json!({"application/json": {"schema": schema_ref("Readiness")}});
    health["responses"]["200"] = json!({
        "description": "Ready: PostgreSQL (migrated) and Kafka answer",
        "content": readiness.clone(),
    });
    health["responses"]["503"] = json!({
        "description": "Not ready; `checks` says which dependency failed and why",
        "content": readiness,
    });
    Ok(())
}

/// Statuses particular to some operations, the CSV import, query parameters.
fn operations(doc: &mut Value) -> Result<()> {
    // A contact upserted alone answers 200 with the updated contact; a batch 200 with its
    // summary.
    let upsert = operation(doc, "post", "/contacts")?;
    upsert["responses"]["200"] = json!({
        "description": "One contact that existed and was updated (`Contact`), or what a batch \
            did (`ContactBatchResult`)",
        "content": {"application/json": {"schema": {"oneOf": [
            schema_ref("Contact"), schema_ref("ContactBatchResult")
        ]}}},
    });

    let conflicts: [(&str, &str); 23] = [
        ("createSequence", "A mailbox id the workspace does not have"),
        (
            "updateSequence",
            "The sequence is archived, a window time does not fit the stored \
            other, or a mailbox id the workspace does not have",
        ),
        (
            "deleteSequence",
            "Contacts were enrolled: archive the sequence instead",
        ),
        (
            "activateSequence",
            "Archived, or without a step or a mailbox",
        ),
        ("pauseSequence", "Not active"),
        ("archiveSequence", "Already archived"),
        (
            "createSequenceStep",
            "Archived, at the step limit, a `step_order` another step has, \
            or a first step without a subject or threaded",
        ),
        (
            "updateSequenceStep",
            "Archived, a `step_order` another step has, moved while contacts \
            are enrolled, or it would leave a first step without a subject or threaded",
        ),
        (
            "deleteSequenceStep",
            "Archived, or the step after it would become a first step \
            without a subject",
        ),
        ("enrollContacts", "The sequence is archived"),
        (
            "upsertContacts",
            "The contact was written concurrently; retry",
        ),
        (
            "updateContact",
            "Another contact of the workspace has that email",
        ),
        (
            "createMailbox",
            "The workspace has a mailbox with this email",
        ),
        (
            "updateMailbox",
            "Another mailbox has this email, the change needs settings the \
            mailbox does not have (a password for a username, every IMAP field when adding \
            IMAP), it changes the address, a username or a password of a mailbox connected \
            with OAuth, or sets `active` while `reconnect_required`",
        ),
        (
            "reconnectOAuthMailbox",
            "The mailbox logs in with a password: connect its address with \
            `POST /mailboxes/oauth/{provider}/authorize`",
        ),
        (
            "deleteMailbox",
            "Messages were sent or queued from it: disable it instead",
        ),
        (
            "verifyMailbox",
            "A stored password cannot be decrypted (set it again)",
        ),
        (
            "rotateWebhookSecret",
            "The stored signing secret does not decrypt with the server's keys \
            (`security.encryption_keys` changed): create the endpoint again",
        ),
        ("testWebhook", "The endpoint is disabled: enable it first"),
        ("pauseEnrollment", "The enrollment is not active"),
        ("resumeEnrollment", "The enrollment is not paused"),
        ("stopEnrollment", "The enrollment has ended"),
        (
            "resolveMessage",
            "The message is not `unknown`, and was not resolved with this outcome \
            before (a different outcome, or a message the worker settled)",
        ),
    ];
    for (id, when) in conflicts {
        operation_by_id(doc, id)?["responses"]["409"] =
            error_response(&format!("{when} (`conflict`)"));
    }
    for id in [
        "createMailbox",
        "updateMailbox",
        "verifyMailbox",
        "authorizeOAuthMailbox",
        "reconnectOAuthMailbox",
    ] {
        operation_by_id(doc, id)?["responses"]["503"] = error_response(
            "The server has no key to encrypt or decrypt mailbox passwords \
             (`encryption_not_configured`)",
        );
    }
    for id in ["createWebhook", "rotateWebhookSecret"] {
        operation_by_id(doc, id)?["responses"]["503"] = error_response(
            "The server has no key to encrypt or decrypt webhook signing secrets \
             (`encryption_not_configured`)",
        );
    }

    let import = operation(doc, "post", "/contacts/import")?;
    let csv = json!({
        "schema": {"type": "string", "description": "CSV: a header row, then a contact per row."},
        "example": "email,first_name,company,plan\njane@example.com,Jane,Example Inc,pro\n",
    });
    import["requestBody"]["content"] = json!({"text/csv": csv.clone(), "application/csv": csv});
    import["responses"]["400"]["description"] = json!(
        "Not sent as CSV (`Content-Type: text/csv`), a damaged file (the row is named), or a \
         query string that does not parse (`bad_request`)"
    );
    import["responses"]["422"]["description"] = json!(
        "The header: no email column, two columns for one field, a bad `map.` parameter \
         (`validation_failed`)"
    );

    for (path, method) in [("/workspaces", "post"), ("/api-keys", "post")] {
        let body = if path == "/workspaces" {
            json!({"name": "Acme", "tracking_base_url": "https://track.acme.example"})
        } else {
            json!({"name": "CRM sync"})
        };
        example(doc, method, path, body)?;
    }

    // Query parameters: page size, cursor, status filters.
    let paths = super::path_names(doc)?;
    for path in paths {
        let Some(get) = doc["paths"][&path].get_mut("get") else {
            continue;
        };
        let statuses: Option<&[&str]> = match path.trim_start_matches(PREFIX.trim_end_matches('/'))
        {
            "/sequences" => Some(&domain::db::sequences::STATUSES),
            "/sequences/{id}/contacts" => Some(&domain::db::enrollments::STATUSES),
            "/sequences/{id}/messages" | "/messages" => Some(&domain::db::messages::STATUSES),
            "/contacts" => Some(&domain::db::contacts::STATUSES),
            "/webhooks/{id}/deliveries" => Some(&domain::db::webhook_deliveries::STATUSES),
            _ => None,
        };
        let paged = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("Page"));
        let Some(Value::Array(parameters)) = get.get_mut("parameters") else {
            if paged {
                bail!("GET {path} answers a page but documents no query parameters");
            }
            continue;
        };
        let names: Vec<&str> = parameters
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        if paged && !(names.contains(&"limit") && names.contains(&"cursor")) {
            bail!("GET {path} answers a page but does not document limit and cursor");
        }
        for parameter in parameters.iter_mut() {
            if parameter["in"] != "query" {
                continue;
            }
            let name = parameter["name"].as_str().unwrap_or_default().to_owned();
            let schema = &mut parameter["schema"];
            match Some(name.as_str()) {
                Some("limit") => merge(
                    schema,
                    json!({"minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
                )?,
                Some("cursor") => merge(schema, json!({"pattern": patterns::CURSOR}))?,
                Some("status") => match statuses {
                    Some(values) => merge(schema, json!({"enum": values}))?,
                    None => bail!("GET {path} has a status filter of unknown values"),
                },
                _ => {}
            }
        }
        for parameter in parameters.iter_mut() {
            let description = match parameter["name"].as_str() {
                Some("limit") => format!("Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
                Some("cursor") => "`next_cursor` of the previous page.".to_owned(),
                Some("status") => "Only those with this status.".to_owned(),
                _ => continue,
            };
            if parameter.get("description").is_none() {
                parameter["description"] = json!(description);
            }
        }
    }
    Ok(())
}

fn example(doc: &mut Value, method: &str, path: &str, example: Value) -> Result<()> {
    let media = operation(doc, method, path)?["requestBody"]["content"]
        .get_mut("application/json")
        .with_context(|| format!("{method} {path} has no JSON body"))?;
    media["example"] = example;
    Ok(())
}

/// Every write body type is `#[serde(deny_unknown_fields)]`: unknown fields are a 422.
fn write_bodies_are_closed(doc: &mut Value) -> Result<()> {
    let mut pending: Vec<Value> = Vec::new();
    for item in doc["paths"].as_object().context("no paths")?.values() {
        for op in item.as_object().into_iter().flatten().map(|(_, op)| op) {
            if let Some(schema) = op["requestBody"]["content"]
                .get("application/json")
                .map(|m| m["schema"].clone())
            {
                pending.push(schema);
            }
        }
    }
    let mut closed: Vec<String> = Vec::new();
    while let Some(schema) = pending.pop() {
        if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
            if closed.iter().any(|c| c == name) {
                continue;
            }
            closed.push(name.to_owned());
            let target = component(doc, name)?;
            if target.get("properties").is_some() {
                target["additionalProperties"] = json!(false);
            }
            pending.push(target.clone());
            continue;
        }
        match schema {
            Value::Object(map) => pending.extend(
                map.into_iter()
                    .filter(|(key, _)| key != "additionalProperties")
                    .map(|(_, v)| v),
            ),
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, value: &str) -> bool {
        let schema = json!({"type": "string", "pattern": pattern});
        jsonschema::is_valid(&schema, &json!(value))
    }

    #[test]
    fn webhook_secret_pattern_matches_generated_secrets() {
        use secrecy::ExposeSecret as _;
        for _ in 0..100 {
            let text = domain::webhooks::WebhookSecret::generate().text();
            assert!(matches(patterns::WEBHOOK_SECRET, text.expose_secret()));
        }
        assert!(!matches(patterns::WEBHOOK_SECRET, "whsec_AAECAwQF"));
        assert!(!matches(
            patterns::WEBHOOK_SECRET,
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        ));
    }

    #[test]
    fn email_pattern_agrees_with_the_validation() {
        let label = "b".repeat(63);
        for candidate in [
            "jane@example.com",
            "Jane.Doe+x@Example.CO.uk",
            "o'neil@xn--bcher-kva.ch",
            "a.b-c_d@e-f.gh",
            "!#$%&'*+/=?^_`{|}~-@example.com",
            &format!("x@{label}.com"),
            &format!("x@{label}b.com"),
            &format!("{}@example.com", "a".repeat(64)),
            &format!("{}@example.com", "a".repeat(65)),
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@@example.com",
            "ja@ne@example.com",
            "jane doe@example.com",
            "jane@example..com",
            "jane@.example.com",
            "jane@example.com.",
            "jane@-example.com",
            "jane@example-.com",
            "jane@exam_ple.com",
            "jäne@example.com",
            "<jane@example.com>",
            "jane(x)@example.com",
        ] {
            assert_eq!(
                matches(patterns::EMAIL, candidate),
                crate::validation::normalise_email(candidate).is_ok(),
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn domain_patterns_agree_with_the_validation() {
        for candidate in [
            "example.com",
            "@example.com",
            "a-b.c.d",
            "example",
            "@",
            "@@example.com",
            "jane@example.com",
            "-a.com",
            "a_b.com",
        ] {
            let documented =
                matches(patterns::DOMAIN, candidate) || matches(patterns::AT_DOMAIN, candidate);
            assert_eq!(
                documented,
                crate::validation::normalise_domain(candidate).is_ok(),
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn time_pattern_agrees_with_chrono() {
        let digits = [
            "", "0", "1", "2", "3", "5", "6", "9", "00", "09", "10", "19", "23", "24", "59", "60",
            "99", "000", "+1", " 1",
        ];
        let mut disagreements = Vec::new();
        for hours in digits {
            for minutes in digits {
                let candidate = format!("{hours}:{minutes}");
                if matches(patterns::TIME, &candidate)
                    != crate::routes::sequences::model::parse_time(&candidate).is_some()
                {
                    disagreements.push(candidate);
                }
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:?}");
        assert!(!matches(patterns::TIME, "0900"));
    }

    #[test]
    fn text_patterns_agree_with_the_validation() {
        for candidate in [
            "",
            "plain",
            " padded ",
            "tab\there",
            "line\nbreak",
            "nul\0",
            "\u{85}x",
            "\u{a0}",
            "é",
            "\u{2028}",
        ] {
            let mut checks = crate::validation::Checks::default();
            checks.single_line("f", candidate, 0, usize::MAX);
            assert_eq!(
                matches(patterns::SINGLE_LINE, candidate),
                checks.finish().is_ok(),
                "{candidate:?}"
            );
            assert_eq!(
                matches(patterns::SINGLE_LINE, candidate),
                crate::validation::check_line(candidate, usize::MAX).is_ok(),
                "line {candidate:?}"
            );
            let mut checks = crate::validation::Checks::default();
            checks.name("f", candidate);
            assert_eq!(
                matches(patterns::SINGLE_LINE_NOT_BLANK, candidate),
                checks.finish().is_ok(),
                "name {candidate:?}"
            );
            let mut checks = crate::validation::Checks::default();
            checks.http_url("f", &format!("https://x/{candidate}"));
            assert_eq!(
                matches(patterns::HTTP_URL, &format!("https://x/{candidate}")),
                checks.finish().is_ok(),
                "url with {candidate:?}"
            );
        }
        for candidate in [
            "smtp.example.com",
            "[::1]",
            "10.0.0.1",
            "a_b",
            "a b",
            "a/b",
            "é",
        ] {
            let mut checks = crate::validation::Checks::default();
            checks.host("f", candidate);
            assert_eq!(
                matches(patterns::HOST, candidate),
                checks.finish().is_ok(),
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn timezones_are_exactly_the_parseable_names() {
        for name in chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()) {
            assert!(name.parse::<chrono_tz::Tz>().is_ok(), "{name}");
        }
    }
}
