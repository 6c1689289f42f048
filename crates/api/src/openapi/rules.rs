//! Rules applied to every operation and schema, from what the Rust types and routes say:
//!
//! - **nullable**: paperclip leaves `Option` fields out of `required` (and puts every other
//!   field in it). serde writes `None` as `null` and reads `null` as `None`, so a field that is
//!   not required is nullable too. (`refine` corrects the exceptions: `#[serde(default)]`
//!   fields, which are optional but not nullable, and fields skipped when `None`.)
//! - **operationId**: from the method and the path (`GET /sequences/{id}` is `getSequence`,
//!   `POST /sequences/{id}/activate` is `activateSequence`), so it is stable while the path is.
//! - **error responses**: the envelope schema for each status the shared machinery can answer:
//!   400 and 422 for operations with a body or query parameters (syntax, then validation),
//!   401 for authenticated ones and 429 for those under the per-key rate limit, 404 for those
//!   with path ids (a malformed id is an id that does not exist), 413 for those with a body,
//!   414 and 500 for all. Statuses that depend on the operation (409, 503) are in `refine`.
//! - **query strings**: `extract::Query` refuses a control character in any query value, so
//!   every free string parameter has the single-line pattern.
//! - **links**: from each `201` of a create to the operations on the created resource
//!   (`/sequences` to `/sequences/{id}` and `/sequences/{id}/activate`, ...), the id taken
//!   from `$response.body#/id`, so that stateful clients and fuzzers can follow them.

use anyhow::{Context as _, Result};
use serde_json::{Map, Value, json};

use super::{ENVELOPE, ERROR, PREFIX, schema_ref};

/// Operation ids that read better than the derived ones (`createContact` for an upsert of
/// one contact or a batch, `createSequenceContact` for enrolling many).
const OPERATION_ID_OVERRIDES: [(&str, &str, &str); 6] = [
    ("post", "/api/v1/contacts", "upsertContacts"),
    ("post", "/api/v1/sequences/{id}/contacts", "enrollContacts"),
    (
        "post",
        "/api/v1/mailboxes/oauth/{provider}/authorize",
        "authorizeOAuthMailbox",
    ),
    (
        "post",
        "/api/v1/mailboxes/{id}/oauth/reconnect",
        "reconnectOAuthMailbox",
    ),
    ("get", "/api/v1/oauth/callback", "oauthCallback"),
    (
        "post",
        "/api/v1/webhooks/{id}/rotate-secret",
        "rotateWebhookSecret",
    ),
];

pub fn apply(doc: &mut Value) -> Result<()> {
    for schema in doc["components"]["schemas"]
        .as_object_mut()
        .into_iter()
        .flatten()
    {
        nullable_when_optional(schema.1);
        bounded_int32(schema.1);
    }
    add_error_schemas(doc)?;
    let paths = super::path_names(doc)?;
    for path in &paths {
        let methods: Vec<String> = doc["paths"][path]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(method, _)| method.clone())
            .collect();
        for method in methods {
            let id = OPERATION_ID_OVERRIDES
                .iter()
                .find(|(m, p, _)| *m == method && p == path)
                .map_or_else(
                    || operation_id(doc, &method, path),
                    |(_, _, id)| (*id).to_owned(),
                );
            let op = &mut doc["paths"][path][&method];
            op["operationId"] = json!(id);
            nullable_when_optional(op);
            bounded_int32(op);
            single_line_queries(op);
            error_responses(op);
        }
    }
    for path in &paths {
        links(doc, path)?;
    }
    Ok(())
}

/// Query parameters are text on one line (`extract::Query`): a string parameter without a
/// pattern or an enum of its own gets the single-line one.
fn single_line_queries(op: &mut Value) {
    let parameters = op.get_mut("parameters").and_then(Value::as_array_mut);
    for parameter in parameters.into_iter().flatten() {
        if parameter["in"] != "query" {
            continue;
        }
        let schema = &mut parameter["schema"];
        if schema["type"] == "string"
            && schema.get("pattern").is_none()
            && schema.get("enum").is_none()
        {
            schema["pattern"] = json!(super::refine::patterns::SINGLE_LINE);
        }
    }
}

/// Marks the properties left out of `required` as nullable, in `schema` and below it.
fn nullable_when_optional(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let required: Vec<String> = map
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            if let Some(Value::Object(properties)) = map.get_mut("properties") {
                for (name, property) in properties.iter_mut() {
                    if !required.contains(name) {
                        make_nullable(property);
                    }
                }
            }
            for child in map.values_mut() {
                nullable_when_optional(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_when_optional),
        _ => {}
    }
}

/// An `int32` is bounded by the type's range (serde refuses what does not fit, with a 422),
/// unless the schema has bounds of its own.
fn bounded_int32(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("type") == Some(&json!("integer"))
                && map.get("format") == Some(&json!("int32"))
            {
                map.entry("minimum").or_insert(json!(i32::MIN));
                map.entry("maximum").or_insert(json!(i32::MAX));
            }
            map.values_mut().for_each(bounded_int32);
        }
        Value::Array(items) => items.iter_mut().for_each(bounded_int32),
        _ => {}
    }
}

/// `nullable: true`; a bare reference is wrapped in `allOf`, since OpenAPI 3.0 ignores the
/// siblings of `$ref`.
fn make_nullable(schema: &mut Value) {
    if let Some(reference) = schema.get("$ref").cloned() {
        *schema = json!({"allOf": [{"$ref": reference}]});
    }
    schema["nullable"] = json!(true);
}

/// `Error` (code, message, details) and `ErrorEnvelope` (`{"error": Error}`).
fn add_error_schemas(doc: &mut Value) -> Result<()> {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .context("no components.schemas")?;
    schemas.insert(
        ERROR.into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable: bad_request, unauthorized, not_found, \
                        conflict, payload_too_large, validation_failed, rate_limited, \
                        encryption_not_configured, internal_error, ...",
                },
                "message": {"type": "string", "description": "For people; may change."},
                "details": {
                    "type": "array",
                    "minItems": 1,
                    "description": "Each field at fault: invalid (422) or not fitting the \
                        stored state (409). Absent otherwise.",
                    "items": schema_ref("FieldError"),
                },
            },
        }),
    );
    schemas.insert(
        ENVELOPE.into(),
        json!({
            "type": "object",
            "description": "Every error answer of the API.",
            "required": ["error"],
            "properties": {"error": schema_ref(ERROR)},
        }),
    );
    Ok(())
}

/// `POST /sequences/{id}/steps` is `createSequenceStep`; see the module comment.
fn operation_id(doc: &Value, method: &str, path: &str) -> String {
    let segments: Vec<&str> = path
        .strip_prefix(PREFIX)
        .unwrap_or(path)
        .trim_matches('/')
        .split('/')
        .collect();
    let is_param = |s: &str| s.starts_with('{');
    // A literal followed by an id names one item of the collection.
    let noun = |upto: usize, singular_last: bool| -> String {
        let mut name = String::new();
        for (i, segment) in segments[..upto].iter().enumerate() {
            if is_param(segment) {
                continue;
            }
            let followed_by_id = segments.get(i + 1).is_some_and(|s| is_param(s));
            let last = i + 1 == upto;
            name.push_str(&camel(segment, followed_by_id || (last && singular_last)));
        }
        name
    };
    let last = segments.len();
    if is_param(segments[last - 1]) {
        let verb = match method {
            "put" => "update",
            "patch" => "patch",
            other => other,
        };
        return format!("{verb}{}", noun(last, false));
    }
    let paths = doc["paths"].as_object();
    let has_items = paths.is_some_and(|p| {
        p.keys()
            .any(|other| other.starts_with(&format!("{path}/{{")))
    });
    let listed = !doc["paths"][path]["get"].is_null();
    match method {
        "get" => {
            let verb = if lists(doc, &doc["paths"][path]["get"]) {
                "list"
            } else {
                "get"
            };
            format!("{verb}{}", noun(last, false))
        }
        "post" if last == 1 || has_items || listed => format!("create{}", noun(last, true)),
        // An action on what precedes it: POST /mailboxes/{id}/verify is verifyMailbox.
        _ => format!(
            "{}{}",
            camel(segments[last - 1], false).to_lowercase_first(),
            noun(last - 1, false)
        ),
    }
}

/// Whether an operation's 200 body is a list (`{"data": [...]}`).
fn lists(doc: &Value, op: &Value) -> bool {
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(reference) => reference
            .rsplit('/')
            .next()
            .map_or(&Value::Null, |name| &doc["components"]["schemas"][name]),
        None => schema,
    };
    schema["properties"]["data"]["type"] == "array"
}

/// `api-keys` as `ApiKeys`, or `ApiKey` when `singular`.
fn camel(segment: &str, singular: bool) -> String {
    let segment = if singular {
        singular_of(segment)
    } else {
        segment.to_owned()
    };
    segment
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn singular_of(plural: &str) -> String {
    if let Some(stem) = plural.strip_suffix("xes") {
        format!("{stem}x")
    } else if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = plural.strip_suffix('s') {
        stem.to_owned()
    } else {
        plural.to_owned()
    }
}

trait LowercaseFirst {
    fn to_lowercase_first(&self) -> String;
}

impl LowercaseFirst for String {
    fn to_lowercase_first(&self) -> String {
        let mut chars = self.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_ascii_lowercase().to_string() + chars.as_str()
        })
    }
}

/// The error statuses the shared machinery can answer for `op` (see the module comment).
fn error_responses(op: &mut Value) {
    let has_body = op.get("requestBody").is_some();
    let parameters: Vec<&str> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["in"].as_str())
        .collect();
    let has_query = parameters.contains(&"query");
    let has_path_id = parameters.contains(&"path");
    let schemes: Vec<&str> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(Map::keys)
        .map(String::as_str)
        .collect();
    let authenticated = !schemes.is_empty();
    let rate_limited = schemes.contains(&super::API_KEY_SCHEME);

    let mut statuses: Vec<(u16, &str)> = Vec::new();
    if has_body || has_query {
        statuses.push((
            400,
            "Malformed request: JSON syntax, or a query string that does not parse (`bad_request`)",
        ));
    }
    if authenticated {
        statuses.push((
            401,
            "Missing, invalid or revoked credentials (`unauthorized`)",
        ));
    }
    if has_path_id {
        statuses.push((
            404,
            "No such resource in this workspace, or an id that is not one (`not_found`)",
        ));
    }
    if has_body {
        statuses.push((
            413,
            "Request body larger than the server accepts (`payload_too_large`)",
        ));
    }
    statuses.push((414, "Request URI too long"));
    if has_body || has_query {
        statuses.push((
            422,
            "Invalid request; `details` names each bad field (`validation_failed`)",
        ));
    }
    if rate_limited {
        statuses.push((
            429,
            "Over the API key's rate limit (`rate_limited`); `Retry-After` says when to retry",
        ));
    }
    statuses.push((
        500,
        "Internal error (`internal_error`); the cause is logged, not returned",
    ));

    let responses = &mut op["responses"];
    if let Some(map) = responses.as_object_mut() {
        // paperclip documents every status of `ApiError` on every operation, without a schema.
        map.retain(|status, _| !status.starts_with('4') && !status.starts_with('5'));
    }
    for (status, description) in statuses {
        responses[status.to_string()] = error_response(description);
    }
    if authenticated {
        responses["401"]["headers"] = json!({
            "WWW-Authenticate": {
                "description": "`Bearer`: the scheme the API expects.",
                "schema": {"type": "string", "enum": ["Bearer"]},
            }
        });
    }
    if rate_limited {
        responses["429"]["headers"] = json!({
            "Retry-After": {
                "description": "Seconds to wait before the key may be used again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        });
    }
}

/// A response with the error envelope.
pub fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref(ENVELOPE)}},
    })
}

/// Links from the 201 of a create at `path` to the operations on the created resource.
fn links(doc: &mut Value, path: &str) -> Result<()> {
    let Some(created) = doc["paths"][path]["post"]["responses"].get("201") else {
        return Ok(());
    };
    let schema = &created["content"]["application/json"]["schema"];
    let has_id = schema["$ref"]
        .as_str()
        .and_then(|reference| reference.rsplit('/').next())
        .is_some_and(|name| !doc["components"]["schemas"][name]["properties"]["id"].is_null());
    if !has_id {
        return Ok(());
    }
    let item_prefix = format!("{path}/{{");
    let mut links = Map::new();
    for (other, item) in doc["paths"].as_object().context("no paths")? {
        let Some(rest) = other.strip_prefix(&item_prefix) else {
            continue;
        };
        let Some((param, below)) = rest.split_once('}') else {
            continue;
        };
        // The resource itself and what hangs off it without another id.
        if below.contains('{') {
            continue;
        }
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            let mut parameters = Map::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] != "path" {
                    continue;
                }
                let name = p["name"].as_str().unwrap_or_default();
                let value = if name == param {
                    "$response.body#/id".to_owned()
                } else {
                    format!("$request.path.{name}")
                };
                parameters.insert(name.to_owned(), json!(value));
            }
            links.insert(
                id.to_owned(),
                json!({
                    "operationId": id,
                    "parameters": parameters,
                    "description": format!(
                        "{} ({} {other}) on the created resource",
                        op["summary"].as_str().unwrap_or(id),
                        method.to_uppercase()
                    ),
                }),
            );
        }
    }
    if !links.is_empty() {
        doc["paths"][path]["post"]["responses"]["201"]["links"] = Value::Object(links);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        let op = json!({"responses": {}});
        let list = json!({"responses": {"200": {"content": {"application/json": {
            "schema": {"properties": {"data": {"type": "array"}}}}}}}});
        json!({"paths": {
            "/api/v1/health": {"get": op},
            "/api/v1/workspaces": {"post": op},
            "/api/v1/api-keys": {"get": list, "post": op},
            "/api/v1/api-keys/{id}": {"delete": op},
            "/api/v1/mailboxes": {"post": op},
            "/api/v1/mailboxes/{id}/verify": {"post": op},
            "/api/v1/contacts/import": {"post": op},
            "/api/v1/sequences/{id}/steps": {"post": op},
            "/api/v1/sequences/{id}/steps/{step_id}": {"put": op},
            "/api/v1/sequences/{id}/stats": {"get": op},
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}": {"get": op},
        }})
    }

    #[test]
    fn operation_ids_read_as_verb_and_resource() {
        let doc = doc();
        for (method, path, id) in [
            ("get", "/api/v1/health", "getHealth"),
            ("post", "/api/v1/workspaces", "createWorkspace"),
            ("get", "/api/v1/api-keys", "listApiKeys"),
            ("post", "/api/v1/api-keys", "createApiKey"),
            ("delete", "/api/v1/api-keys/{id}", "deleteApiKey"),
            ("post", "/api/v1/mailboxes", "createMailbox"),
            ("post", "/api/v1/mailboxes/{id}/verify", "verifyMailbox"),
            ("post", "/api/v1/contacts/import", "importContacts"),
            ("post", "/api/v1/sequences/{id}/steps", "createSequenceStep"),
            (
                "put",
                "/api/v1/sequences/{id}/steps/{step_id}",
                "updateSequenceStep",
            ),
            ("get", "/api/v1/sequences/{id}/stats", "getSequenceStats"),
            (
                "get",
                "/api/v1/webhooks/{id}/deliveries/{delivery_id}",
                "getWebhookDelivery",
            ),
        ] {
            assert_eq!(operation_id(&doc, method, path), id, "{method} {path}");
        }
    }

    #[test]
    fn optional_properties_are_nullable_and_references_wrapped() {
        let mut schema = json!({
            "type": "object",
            "required": ["a"],
            "properties": {
                "a": {"type": "string"},
                "b": {"type": "string"},
                "c": {"$ref": "#/components/schemas/C"},
            }
        });
        nullable_when_optional(&mut schema);
        assert!(schema["properties"]["a"].get("nullable").is_none());
        assert_eq!(schema["properties"]["b"]["nullable"], true);
        assert_eq!(
            schema["properties"]["c"],
            json!({"allOf": [{"$ref": "#/components/schemas/C"}], "nullable": true})
        );
    }
}
