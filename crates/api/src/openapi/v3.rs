//! Swagger 2.0, as paperclip generates it from the handlers, into OpenAPI 3.0.3.
//!
//! A mechanical translation that keeps everything paperclip knows (paperclip-core's own
//! `v3` conversion drops `minimum`/`maximum`, writes `nullable: false` everywhere and sends
//! every body as JSON): definitions become `components.schemas` (with readable names for
//! generic types: `Page<Contact>` is `ContactPage`), body parameters become `requestBody`
//! with the operation's `consumes` media types, response schemas are JSON content, and the
//! `Authorization: Bearer ...` API-key schemes become HTTP bearer schemes. What the Rust
//! types cannot say is added afterwards by `rules` and `refine`.

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};

pub const OPENAPI_VERSION: &str = "3.0.3";
const JSON: &str = "application/json";

/// The 3.0.3 document for paperclip's 2.0 document `v2`.
pub fn convert(v2: &Value) -> Result<Value> {
    let mut schemas = Map::new();
    for (name, schema) in object(v2, "definitions")? {
        schemas.insert(component_name(name), convert_schema(schema));
    }
    let mut security_schemes = Map::new();
    for (name, scheme) in object(v2, "securityDefinitions")? {
        security_schemes.insert(name.clone(), convert_security_scheme(name, scheme)?);
    }
    let mut paths = Map::new();
    for (path, operations) in object(v2, "paths")? {
        let mut item = Map::new();
        for (method, operation) in operations.as_object().context("a path item")? {
            item.insert(
                method.clone(),
                convert_operation(operation)
                    .with_context(|| format!("{} {path}", method.to_uppercase()))?,
            );
        }
        paths.insert(path.clone(), Value::Object(item));
    }
    Ok(json!({
        "openapi": OPENAPI_VERSION,
        "info": v2["info"],
        "tags": v2["tags"],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": security_schemes,
        },
    }))
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match &value[key] {
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        Value::Object(map) => Ok(map),
        _ => bail!("`{key}` is not an object"),
    }
}

/// A component name for a paperclip definition name: `Page%3CContact%3E` (`Page<Contact>`)
/// becomes `ContactPage`, since code generators make type names of these.
pub fn component_name(v2_name: &str) -> String {
    let decoded = v2_name.replace("%3C", "<").replace("%3E", ">");
    match decoded.split_once('<') {
        Some((outer, inner)) => {
            let inner = component_name(inner.strip_suffix('>').unwrap_or(inner));
            format!("{inner}{outer}")
        }
        None => decoded,
    }
}

/// `#/definitions/X` references become `#/components/schemas/X`; integral floats such as
/// paperclip's `65535.0` bounds become integers.
pub(crate) fn convert_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = match (key.as_str(), value) {
                        ("$ref", Value::String(reference)) => {
                            let name = reference
                                .strip_prefix("#/definitions/")
                                .unwrap_or(reference);
                            Value::String(format!("#/components/schemas/{}", component_name(name)))
                        }
                        // Property names, not schemas: convert what they hold.
                        ("properties", Value::Object(properties)) => Value::Object(
                            properties
                                .iter()
                                .map(|(name, s)| (name.clone(), convert_schema(s)))
                                .collect(),
                        ),
                        ("minimum" | "maximum", Value::Number(n)) => integral(n),
                        (_, other) => convert_schema(other),
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(convert_schema).collect()),
        other => other.clone(),
    }
}

fn integral(n: &serde_json::Number) -> Value {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
        _ => Value::Number(n.clone()),
    }
}

/// paperclip only knows `apiKey` schemes; ours carry `Authorization: Bearer <token>`, which
/// OpenAPI 3 calls HTTP bearer authentication (and generated clients then send it right).
fn convert_security_scheme(name: &str, scheme: &Value) -> Result<Value> {
    let bearer = scheme["type"] == "apiKey"
        && scheme["in"] == "header"
        && scheme["name"]
            .as_str()
            .is_some_and(|header| header.eq_ignore_ascii_case("authorization"));
    if !bearer {
        bail!("security scheme `{name}` is not an Authorization header: {scheme}");
    }
    let mut converted = json!({"type": "http", "scheme": "bearer"});
    if let Some(description) = scheme.get("description") {
        converted["description"] = description.clone();
    }
    Ok(converted)
}

fn convert_operation(v2: &Value) -> Result<Value> {
    let mut op = Map::new();
    for key in [
        "tags",
        "summary",
        "description",
        "operationId",
        "deprecated",
        "security",
    ] {
        if let Some(value) = v2.get(key) {
            op.insert(key.to_owned(), value.clone());
        }
    }
    let consumes: Vec<String> = match v2.get("consumes") {
        Some(Value::Array(media)) => media
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
        _ => vec![JSON.to_owned()],
    };
    let mut parameters = Vec::new();
    for parameter in v2
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if parameter["in"] == "body" {
            let schema = convert_schema(&parameter["schema"]);
            let content: Map<String, Value> = consumes
                .iter()
                .map(|media| (media.clone(), json!({ "schema": schema })))
                .collect();
            let mut body = json!({
                "required": parameter["required"].as_bool().unwrap_or(false),
                "content": content,
            });
            if let Some(description) = parameter.get("description") {
                body["description"] = description.clone();
            }
            op.insert("requestBody".into(), body);
        } else {
            parameters.push(convert_parameter(parameter)?);
        }
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    let mut responses = Map::new();
    for (status, response) in v2
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut converted = json!({
            "description": response.get("description").cloned().unwrap_or_else(|| json!("")),
        });
        if let Some(schema) = response.get("schema") {
            converted["content"] = json!({ JSON: { "schema": convert_schema(schema) } });
        }
        responses.insert(status.clone(), converted);
    }
    op.insert("responses".into(), Value::Object(responses));
    Ok(Value::Object(op))
}

/// A path or query parameter: the 2.0 inline type moves into `schema`.
fn convert_parameter(v2: &Value) -> Result<Value> {
    let location = v2["in"].as_str().context("parameter without `in`")?;
    if !matches!(location, "path" | "query" | "header") {
        bail!("unsupported parameter location `{location}`");
    }
    let mut schema = Map::new();
    let mut parameter = Map::new();
    for (key, value) in v2.as_object().context("a parameter")? {
        match key.as_str() {
            "name" | "in" | "description" => {
                parameter.insert(key.clone(), value.clone());
            }
            "required" => {}
            "collectionFormat" | "allowEmptyValue" => {
                bail!("unsupported parameter keyword `{key}`")
            }
            _ => {
                schema.insert(key.clone(), value.clone());
            }
        }
    }
    parameter.insert(
        "required".into(),
        json!(location == "path" || v2["required"] == true),
    );
    parameter.insert("schema".into(), convert_schema(&Value::Object(schema)));
    Ok(Value::Object(parameter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_definitions_get_type_names() {
        assert_eq!(component_name("Page%3CContact%3E"), "ContactPage");
        assert_eq!(component_name("Page<Mailbox>"), "MailboxPage");
        assert_eq!(component_name("Sequence"), "Sequence");
    }

    #[test]
    fn bodies_parameters_and_responses_move_to_their_v3_places() -> Result<()> {
        let v2 = json!({
            "info": {"title": "t", "version": "1"},
            "definitions": {"Page%3CX%3E": {"type": "object", "properties": {
                "x": {"$ref": "#/definitions/X"},
                "port": {"type": "integer", "minimum": 0.0, "maximum": 65535.0}
            }}},
            "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "Authorization"}},
            "paths": {"/a/{id}": {"post": {
                "consumes": ["text/csv"],
                "parameters": [
                    {"in": "path", "name": "id", "required": true, "type": "string", "format": "uuid"},
                    {"in": "query", "name": "limit", "type": "integer", "format": "int64"},
                    {"in": "body", "name": "body", "required": true, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "OK", "schema": {"$ref": "#/definitions/Page%3CX%3E"}},
                    "204": {"description": "No Content"}
                }
            }}}
        });
        let v3 = convert(&v2)?;
        assert_eq!(v3["openapi"], "3.0.3");
        let page = &v3["components"]["schemas"]["XPage"];
        assert_eq!(page["properties"]["x"]["$ref"], "#/components/schemas/X");
        assert_eq!(page["properties"]["port"]["maximum"], json!(65535));
        assert_eq!(
            v3["components"]["securitySchemes"]["key"],
            json!({"type": "http", "scheme": "bearer"})
        );
        let op = &v3["paths"]["/a/{id}"]["post"];
        assert_eq!(
            op["requestBody"]["content"]["text/csv"]["schema"],
            json!({"type": "string"})
        );
        assert_eq!(
            op["parameters"][0],
            json!({"name": "id", "in": "path", "required": true,
                   "schema": {"type": "string", "format": "uuid"}})
        );
        assert_eq!(op["parameters"][1]["required"], false);
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/XPage"
        );
        assert!(op["responses"]["204"].get("content").is_none());
        Ok(())
    }
}
