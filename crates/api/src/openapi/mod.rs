//! The OpenAPI 3.0.3 document of the API, served at `/api/v1/openapi.json`, browsable with
//! Swagger UI at `/swagger` and `/api/v1/swagger`, committed as `docs/openapi.json` (a test
//! fails while that file differs; `cargo xtask openapi` rewrites it).
//!
//! It is generated, so it cannot drift from the handlers: paperclip describes the handlers in
//! Swagger 2.0 (paths, parameters, the Rust types of bodies and responses, doc comments), and
//! then, in order:
//! - `v3` translates that into OpenAPI 3.0.3;
//! - `components` names the nested types (`SendingWindow`, `Variant`, ...) and refers to them;
//! - `rules` applies what holds for every operation or schema (nullable options,
//!   operationIds, error responses with the envelope, links from creates);
//! - `refine` adds, per type and operation, what the Rust types cannot say: constraints
//!   (taken from the constants the validation uses), `#[serde(default)]` fields that are not
//!   required, `oneOf`/`anyOf` for "one of these fields", the CSV import, the health check,
//!   request examples.
//!
//! OpenAPI 3.0.3 rather than 3.1: the Swagger UI paperclip bundles (3.52) and many client
//! generators read only 3.0. What JSON Schema cannot express at all (two fields compared, the
//! template language, attribute names under 3.0) is written in descriptions, listed in
//! docs/testing.md, and answered 422 like any invalid field.

mod components;
mod refine;
mod rules;
mod v3;

use actix_web::HttpResponse;
use anyhow::Context as _;
use paperclip::actix::OpenApiExt;
use paperclip::v2::models::{DefaultApiRaw, Info, Tag};
use serde_json::{Value, json};

/// Where the document is served.
pub const SPEC_PATH: &str = "/api/v1/openapi.json";
/// Where it was served before it became the primary document; kept for existing clients.
pub const SPEC_ALIAS_PATH: &str = "/api/v1/openapi-v3.json";
pub const SWAGGER_PATHS: [&str; 2] = ["/swagger", "/api/v1/swagger"];
/// Prefix of every documented path.
const PREFIX: &str = "/api/v1/";
/// Component names of the error envelope and of its `error` object.
const ENVELOPE: &str = "ErrorEnvelope";
const ERROR: &str = "Error";
/// The security scheme of API keys (rate limited), as opposed to the admin token's.
const API_KEY_SCHEME: &str = "apiKey";

/// Files paperclip's Swagger UI serves; anything else under its paths is a 404 (paperclip
/// itself would panic on an unknown file name).
const SWAGGER_FILES: [&str; 8] = [
    "index.html",
    "swagger-ui.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "swagger-ui.js",
    "favicon-16x16.png",
    "favicon-32x32.png",
    "oauth2-redirect.html",
];

pub fn base_spec() -> DefaultApiRaw {
    let info = Info {
        title: "Sequence Service API".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: Some(
            "Campaign authoring: workspaces and keys, sequences and steps, mailboxes, contacts, \
             enrollments, suppressions, stats and webhooks. Errors use one envelope: \
             {\"error\": {\"code\", \"message\", \"details\": [{\"field\", \"message\"}]}}."
                .into(),
        ),
        ..Default::default()
    };
    let tags = [
        "Health",
        "Workspaces",
        "ApiKeys",
        "Sequences",
        "Contacts",
        "Suppressions",
        "Mailboxes",
        "Enrollments",
        "Messages",
        "Stats",
        "Webhooks",
    ]
    .into_iter()
    .map(|name| Tag {
        name: name.into(),
        description: None,
        external_docs: None,
    })
    .collect();
    DefaultApiRaw {
        info,
        tags,
        ..Default::default()
    }
}

/// True for a request under a Swagger UI path that names a file paperclip does not have.
pub fn is_unknown_swagger_file(path: &str) -> bool {
    SWAGGER_PATHS.iter().any(|base| {
        path.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|file| !file.is_empty() && !SWAGGER_FILES.contains(&file))
    })
}

/// The document's paths, as owned keys (so the document can be changed while going through
/// them).
fn path_names(doc: &Value) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    Ok(doc["paths"]
        .as_object()
        .context("no paths")?
        .keys()
        .cloned()
        .collect())
}

/// A reference to a component schema.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// paperclip's Swagger 2.0 description of the handlers, the raw material of the document.
fn paperclip_v2() -> Value {
    let mut captured = Value::Null;
    let _app = actix_web::App::new()
        .wrap_api_with_spec(base_spec())
        .configure(crate::routes::configure)
        .with_raw_json_spec(|app, spec| {
            captured = spec;
            app
        })
        .build();
    captured
}

/// The OpenAPI 3.0.3 document.
pub fn document() -> anyhow::Result<Value> {
    let mut doc = v3::convert(&paperclip_v2()).context("translating to OpenAPI 3")?;
    components::hoist(&mut doc).context("naming nested types")?;
    rules::apply(&mut doc).context("applying the rules")?;
    refine::apply(&mut doc).context("refining")?;
    tidy_descriptions(&mut doc);
    Ok(doc)
}

/// Doc comments come with the space after each `///`: `"a\n b"` becomes `"a\nb"`.
fn tidy_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" || key == "summary" => {
                        *text = text.replace("\n ", "\n");
                    }
                    _ => tidy_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy_descriptions),
        _ => {}
    }
}

/// The document pretty-printed, as committed in docs/openapi.json.
pub fn document_text() -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(&document()?)?;
    text.push('\n');
    Ok(text)
}

/// The document as served: generated once when the server starts.
#[derive(Clone)]
pub struct Served(actix_web::web::Bytes);

impl Served {
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self(serde_json::to_vec(&document()?)?.into()))
    }
}

/// Serves the document. Registered before paperclip's own spec route at the same path
/// (which Swagger UI needs to know where the document is), so this one answers.
pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    for path in [SPEC_PATH, SPEC_ALIAS_PATH] {
        cfg.service(actix_web::web::resource(path).get(serve));
    }
}

async fn serve(served: actix_web::web::Data<Served>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(served.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_document_matches_the_handlers() -> anyhow::Result<()> {
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap_or_default();
        let generated = document_text()?;
        assert!(
            committed == generated,
            "docs/openapi.json is stale: run `cargo xtask openapi`"
        );
        Ok(())
    }

    /// OpenAPI has no `null` for a keyword: a value written into a missing key by mistake
    /// (serde_json's `IndexMut` inserts `null`) makes the document invalid for tools.
    /// `null` belongs only in values: enums, examples and defaults.
    #[test]
    fn no_keyword_of_the_document_is_null() -> anyhow::Result<()> {
        fn walk(value: &Value, path: &str, in_value: bool, found: &mut Vec<String>) {
            match value {
                Value::Null if !in_value => found.push(path.to_owned()),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, &format!("{path}/{i}"), in_value, found);
                    }
                }
                Value::Object(map) => {
                    for (key, item) in map {
                        let value_keyword = in_value
                            || matches!(key.as_str(), "enum" | "example" | "examples" | "default");
                        walk(item, &format!("{path}/{key}"), value_keyword, found);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        walk(&document()?, "", false, &mut found);
        assert!(found.is_empty(), "null keywords at {found:?}");
        Ok(())
    }

    #[test]
    fn unknown_swagger_files_are_recognised() {
        assert!(is_unknown_swagger_file("/swagger/../../etc/passwd"));
        assert!(is_unknown_swagger_file("/api/v1/swagger/nope.js"));
        assert!(!is_unknown_swagger_file("/swagger/index.html"));
        assert!(!is_unknown_swagger_file("/swagger"));
        assert!(!is_unknown_swagger_file("/api/v1/sequences"));
    }
}
