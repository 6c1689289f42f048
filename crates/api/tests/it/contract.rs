//! The API's answers against the committed OpenAPI document (docs/openapi.json): every
//! request the test client sends has its response checked here, so a test that gets a status
//! the document does not list for the operation, or a body its schema does not allow, fails
//! naming the operation, the status and the JSON pointer of what is wrong. Drift in either
//! direction (a handler that changed, a document that was not regenerated) fails the tests.
//!
//! - The request's path is matched to a documented path template (literal segments before
//!   `{parameters}`, so `/contacts/import` is not `/contacts/{id}`) and its method.
//! - A path no template matches must answer 404 with the error envelope; a documented path
//!   with an undocumented method must answer 405 with an `Allow` header naming the
//!   documented methods and the envelope. Service routes (`/healthz`, `/readyz`, `/metrics`),
//!   the document itself and Swagger UI are not operations and are not checked.
//! - A JSON body is validated against the response schema, and documented headers
//!   (`Retry-After`, `WWW-Authenticate`) must be present and valid. OpenAPI 3.0 schemas are turned
//!   into JSON Schema 2020-12 (`nullable` becomes `anyOf [..., null]`) and, for responses
//!   only, object schemas are closed (`additionalProperties: false`): a field the server sends
//!   but the document does not describe is drift too, though clients are not told to reject
//!   unknown fields.
//!
//! The document is read and converted once per test binary; a validator is compiled once per
//! operation and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Map, Value, json};

/// Paths served by the api that are not operations of the document.
const UNCHECKED: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/openapi-v3.json",
    "/swagger",
];
const UNCHECKED_PREFIXES: [&str; 2] = ["/swagger/", "/api/v1/swagger"];

pub struct Contract {
    document: Value,
    /// `$defs` of every schema compiled: the components, converted.
    defs: Value,
    templates: Vec<Template>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

struct Template {
    path: String,
    segments: Vec<Option<String>>,
}

impl Template {
    fn new(path: &str) -> Self {
        let segments = path
            .trim_matches('/')
            .split('/')
            .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
            .collect();
        Self {
            path: path.to_owned(),
            segments,
        }
    }

    /// How many literal segments matched, or None.
    fn matches(&self, path: &str) -> Option<usize> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut literal = 0;
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Some(s) if s == part => literal += 1,
                Some(_) => return None,
                None if part.is_empty() => return None,
                None => {}
            }
        }
        Some(literal)
    }
}

/// The committed document, loaded once.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let document: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
        Contract::new(document)
    })
}

impl Contract {
    fn new(document: Value) -> Self {
        let components = document["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let defs: Map<String, Value> = components
            .into_iter()
            .map(|(name, schema)| (name, to_json_schema(&schema, true)))
            .collect();
        let templates = document["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, _)| Template::new(path))
            .collect();
        Self {
            document,
            defs: Value::Object(defs),
            templates,
            validators: Mutex::new(HashMap::new()),
        }
    }

    fn template(&self, path: &str) -> Option<&Template> {
        self.templates
            .iter()
            .filter_map(|t| t.matches(path).map(|literal| (literal, t)))
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, t)| t)
    }

    /// Checks one exchange; the error says what the document and the server disagree on.
    pub fn check(
        &self,
        method: &str,
        url_path: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<()> {
        let path = url_path.split('?').next().unwrap_or(url_path);
        if UNCHECKED.contains(&path) || UNCHECKED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Ok(());
        }
        let method = method.to_ascii_lowercase();
        let Some(template) = self.template(path) else {
            let label = format!("{} {path} (no such operation)", method.to_uppercase());
            if status != 404 {
                bail!("{label}: answered {status}; a path the document does not have is a 404");
            }
            return self.check_envelope(&label, status, headers, body);
        };
        let item = &self.document["paths"][&template.path];
        let label = format!("{} {}", method.to_uppercase(), template.path);
        let Some(operation) = item.get(&method) else {
            let mut documented: Vec<String> = item
                .as_object()
                .into_iter()
                .flatten()
                .map(|(m, _)| m.to_uppercase())
                .collect();
            documented.sort();
            if status != 405 {
                bail!("{label} (undocumented method): answered {status}, not 405");
            }
            let mut allowed: Vec<String> = headers
                .get_all(reqwest::header::ALLOW)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|m| m.trim().to_uppercase())
                .filter(|m| !m.is_empty())
                .collect();
            allowed.sort();
            if allowed != documented {
                bail!("{label}: 405 with Allow {allowed:?}, but the document has {documented:?}");
            }
            return self.check_envelope(&label, status, headers, body);
        };
        let Some(response) = operation["responses"].get(status.to_string()) else {
            let documented: Vec<&String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            bail!(
                "{label}: answered {status}, which the document does not list ({documented:?}); \
                 body: {}",
                String::from_utf8_lossy(body)
            );
        };
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            if !body.is_empty() {
                bail!(
                    "{label} {status}: documented without a body, answered {}",
                    String::from_utf8_lossy(body)
                );
            }
            return Ok(());
        };
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let Some(documented) = content.get(media) else {
            bail!(
                "{label} {status}: content type {content_type:?} is not documented ({:?})",
                content.keys().collect::<Vec<_>>()
            );
        };
        if media == "text/html" {
            // A page for a browser (the OAuth callback): text, not a schema to check.
            if std::str::from_utf8(body).map_or(true, |page| !page.contains("<html")) {
                bail!("{label} {status}: documented as HTML, answered no HTML page");
            }
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body).with_context(|| {
            format!(
                "{label} {status}: the body is not JSON: {}",
                String::from_utf8_lossy(body)
            )
        })?;
        let key = format!("{label} {status} {media}");
        self.validate(&key, &documented["schema"], &instance)
            .with_context(|| format!("{label} answered {status}"))?;
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let Some(value) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) else {
                bail!("{label} {status} without its documented {name} header");
            };
            let value = match header["schema"]["type"].as_str() {
                Some("integer") => value
                    .parse::<i64>()
                    .map(|n| json!(n))
                    .with_context(|| format!("{label} {status}: {name}: {value:?}"))?,
                _ => json!(value),
            };
            self.validate(&format!("{key} {name}"), &header["schema"], &value)
                .with_context(|| format!("{label} {status}: header {name}"))?;
        }
        Ok(())
    }

    fn check_envelope(
        &self,
        label: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<()> {
        let instance: Value = serde_json::from_slice(body).with_context(|| {
            format!(
                "{label} {status}: not the error envelope: {:?}",
                String::from_utf8_lossy(body)
            )
        })?;
        let media = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !media.starts_with("application/json") {
            bail!("{label} {status}: content type {media:?}, not JSON");
        }
        self.validate(
            "envelope",
            &json!({"$ref": "#/components/schemas/ErrorEnvelope"}),
            &instance,
        )
        .with_context(|| format!("{label} answered {status}"))
    }

    /// Validates `instance` against a schema of the document (converted and compiled once
    /// under `key`).
    pub fn validate(&self, key: &str, schema: &Value, instance: &Value) -> Result<()> {
        let validator = {
            let mut validators = self
                .validators
                .lock()
                .map_err(|_| anyhow!("validator cache poisoned"))?;
            match validators.get(key) {
                Some(validator) => validator.clone(),
                None => {
                    let mut root = to_json_schema(schema, true);
                    let root_map = root
                        .as_object_mut()
                        .context("a schema that is not an object")?;
                    root_map.insert("$defs".into(), self.defs.clone());
                    let validator = jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft202012)
                        .should_validate_formats(true)
                        .build(&root)
                        .map_err(|e| {
                            anyhow!("{key}: the document's schema does not compile: {e}")
                        })?;
                    let validator = Arc::new(validator);
                    validators.insert(key.to_owned(), validator.clone());
                    validator
                }
            }
        };
        let problems: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| {
                format!(
                    "at {:?} (schema {}): {e}",
                    e.instance_path().to_string(),
                    e.schema_path()
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "the body does not match the document:\n  {}\nbody: {instance}",
                problems.join("\n  ")
            )
        }
    }

    /// Request bodies (examples) are checked without closing objects beyond what the
    /// document says.
    pub fn validate_request(&self, key: &str, schema: &Value, instance: &Value) -> Result<()> {
        let mut root = to_json_schema(schema, false);
        let defs: Map<String, Value> = self.document["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, s)| (name.clone(), to_json_schema(s, false)))
            .collect();
        root.as_object_mut()
            .context("a schema that is not an object")?
            .insert("$defs".into(), Value::Object(defs));
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| anyhow!("{key}: the document's schema does not compile: {e}"))?;
        let problems: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{key}: {}", problems.join("; "))
        }
    }

    pub fn document(&self) -> &Value {
        &self.document
    }
}

/// An OpenAPI 3.0 schema as JSON Schema 2020-12: `nullable` becomes a union with null,
/// references point into `$defs`, OpenAPI-only keywords go, and with `closed` every object
/// schema listing its properties refuses others.
fn to_json_schema(schema: &Value, closed: bool) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                match key.as_str() {
                    "nullable" | "example" | "discriminator" | "xml" | "externalDocs" => {}
                    "$ref" => {
                        let name = value.as_str().unwrap_or_default().rsplit('/').next();
                        out.insert(
                            key.clone(),
                            json!(format!("#/$defs/{}", name.unwrap_or(""))),
                        );
                    }
                    "properties" => {
                        let properties = value
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(name, s)| (name.clone(), to_json_schema(s, closed)))
                            .collect();
                        out.insert(key.clone(), Value::Object(properties));
                    }
                    _ => {
                        out.insert(key.clone(), to_json_schema(value, closed));
                    }
                }
            }
            if closed
                && out.get("type") == Some(&json!("object"))
                && out.contains_key("properties")
                && !out.contains_key("additionalProperties")
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            if map.get("nullable") == Some(&json!(true)) {
                return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|s| to_json_schema(s, closed)).collect())
        }
        other => other.clone(),
    }
}

#[test]
fn request_examples_are_valid_by_the_document() -> Result<()> {
    let contract = contract();
    let mut checked = 0;
    for (path, item) in contract.document()["paths"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let Some(body) = operation.get("requestBody") else {
                continue;
            };
            let json_body = body["content"].get("application/json");
            let Some(media) = json_body else {
                continue;
            };
            let Some(example) = media.get("example") else {
                bail!("{} {path} has no request example", method.to_uppercase());
            };
            let key = format!("{} {path}", method.to_uppercase());
            contract.validate_request(&key, &media["schema"], example)?;
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} examples");
    Ok(())
}

#[test]
fn the_document_refuses_what_the_api_refuses() -> Result<()> {
    let contract = contract();
    let body = |path: &str, method: &str| {
        contract.document()["paths"][path][method]["requestBody"]["content"]["application/json"]
            ["schema"]
            .clone()
    };
    let sequences = body("/api/v1/sequences", "post");
    let suppressions = body("/api/v1/suppressions", "post");
    let contacts = body("/api/v1/contacts", "post");
    let enroll = body("/api/v1/sequences/{id}/contacts", "post");
    for (schema, valid, instance) in [
        (&sequences, true, json!({"name": "x"})),
        (&sequences, false, json!({"name": "x", "workspace_id": "y"})),
        (&sequences, false, json!({"name": "   "})),
        (&sequences, false, json!({"name": "x", "steps": null})),
        (
            &sequences,
            true,
            json!({"name": "x", "sending_window": null}),
        ),
        (&suppressions, true, json!({"email": "a@b.co"})),
        (
            &suppressions,
            true,
            json!({"email": null, "domain": "b.co"}),
        ),
        (
            &suppressions,
            false,
            json!({"email": "a@b.co", "domain": "b.co"}),
        ),
        (&suppressions, false, json!({})),
        (
            &contacts,
            true,
            json!({"email": "a@b.co", "contacts": null}),
        ),
        (
            &contacts,
            true,
            json!({"contacts": [{"email": "a@b.co"}, 7]}),
        ),
        (
            &contacts,
            false,
            json!({"contacts": [{"email": "a@b.co"}], "title": "x"}),
        ),
        (&contacts, false, json!({"contacts": []})),
        (&contacts, false, json!({"first_name": "x"})),
        (&enroll, false, json!({})),
        (&enroll, false, json!({"contacts": [], "contact_ids": []})),
        (
            &enroll,
            true,
            json!({"contact_ids": ["01939b8e-6e6a-7cc3-9d3c-2f0e7f3b1a01"]}),
        ),
    ] {
        let result = contract.validate_request("case", schema, &instance);
        assert_eq!(result.is_ok(), valid, "{instance}: {result:?}");
    }
    Ok(())
}
