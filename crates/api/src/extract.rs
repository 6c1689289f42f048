//! The JSON body extractor of every write endpoint: a size limit (413), syntax errors (400),
//! NUL characters anywhere (422: PostgreSQL cannot store them), and type, missing or unknown
//! fields (422) reported with the path of the field, then the request type's own validation
//! (422 naming each bad field). Query strings have their own extractor, [`Query`].

mod nul;
mod query;

pub use query::{Query, parse as parse_query};

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use paperclip::actix::OperationModifier;
use paperclip::v2::models::{DefaultOperationRaw, DefaultSchemaRaw};
use paperclip::v2::schema::Apiv2Schema;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Validation beyond what serde checks; collects every problem, not just the first.
pub trait Validate {
    fn validate(&self) -> Result<(), Vec<FieldError>>;

    /// What an empty body means, for bodies whose every field is optional (`{}`); `None`
    /// (the default) makes an empty body malformed JSON like any other.
    fn when_empty() -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// For a field of a partial update that `null` clears: `Some(None)` for an explicit `null`,
/// `None` when the field is absent. Use with `#[serde(default, deserialize_with = ...)]`.
pub fn nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// Limit for JSON bodies, from `api.max_body_bytes`.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

pub struct Body<T>(pub T);

impl<T> Body<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> FromRequest for Body<T>
where
    T: DeserializeOwned + Validate + 'static,
{
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map_or(1 << 20, |l| l.0);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut bytes = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::BadRequest(format!("could not read body: {e}")))?;
                if bytes.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                bytes.extend_from_slice(&chunk);
            }
            refuse_nul(&bytes)?;
            let empty = bytes.iter().all(u8::is_ascii_whitespace);
            let value: T = match T::when_empty().filter(|_| empty) {
                Some(value) => value,
                None => parse(&bytes)?,
            };
            value.validate().map_err(ApiError::Validation)?;
            Ok(Body(value))
        })
    }
}

/// A 422 naming the first field (or the object holding the key) that holds a NUL.
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    if !nul::has_nul_escape(bytes) {
        return Ok(());
    }
    // Malformed JSON is reported by the parse that follows.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    match nul::find_nul(&value) {
        Some((field, false)) => Err(ApiError::invalid(field, "must not contain NUL characters")),
        Some((field, true)) => Err(ApiError::invalid(
            field,
            "keys must not contain NUL characters",
        )),
        None => Ok(()),
    }
}

/// Deserialises with the path of any failing field. Every body of this API is a JSON object
/// (serde would also read a struct from an array of its fields in order).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && *first != b'{'
    {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::invalid("body", "must be a JSON object")),
            Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => deserializer
            .end()
            .map(|()| value)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}"))),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ApiError::BadRequest(format!("malformed JSON: {inner}")));
            }
            Err(ApiError::Validation(vec![field_error(&path, &inner)]))
        }
    }
}

/// Deserialises a JSON value (an item of a batch) into `T`, naming the failing field. Items
/// are objects, as bodies are.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    if !value.is_object() {
        return Err(FieldError::new("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
        let path = error.path().to_string();
        field_error(&path, error.inner())
    })
}

fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let text = error.to_string();
    // A missing field is reported against the enclosing object; name the field itself.
    // (An unknown field's path already ends with its name.)
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (named, path) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    let message = if message.starts_with("unknown field") {
        "unknown field (not writable or misspelt)".to_owned()
    } else {
        message
    };
    FieldError::new(field, message)
}

impl<T: Apiv2Schema> Apiv2Schema for Body<T> {
    fn name() -> Option<String> {
        T::name()
    }

    fn raw_schema() -> DefaultSchemaRaw {
        T::raw_schema()
    }
}

impl<T: Apiv2Schema> OperationModifier for Body<T> {
    fn update_parameter(op: &mut DefaultOperationRaw) {
        paperclip::actix::web::Json::<T>::update_parameter(op);
    }

    fn update_definitions(map: &mut std::collections::BTreeMap<String, DefaultSchemaRaw>) {
        paperclip::actix::web::Json::<T>::update_definitions(map);
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        steps: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        wait_days: u32,
    }

    fn error(json: &str) -> ApiError {
        match parse::<Outer>(json.as_bytes()) {
            Ok(v) => panic!("parsed {v:?}"),
            Err(e) => e,
        }
    }

    fn field(error: ApiError) -> String {
        match error {
            ApiError::Validation(details) => details[0].field.clone(),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        assert!(matches!(error("{\"name\": "), ApiError::BadRequest(_)));
        assert!(matches!(
            error(r#"{"name": "a", "steps": []} trailing"#),
            ApiError::BadRequest(_)
        ));
    }

    #[test]
    fn bodies_are_objects() {
        assert_eq!(field(error("[\"a\", []]")), "body");
        assert_eq!(field(error(" null")), "body");
        assert!(matches!(error("[1,"), ApiError::BadRequest(_)));
    }

    #[test]
    fn field_errors_name_the_path() {
        assert_eq!(field(error(r#"{"name": 1, "steps": []}"#)), "name");
        assert_eq!(field(error(r#"{"steps": []}"#)), "name");
        assert_eq!(
            field(error(r#"{"name": "a", "steps": [{"wait_days": -1}]}"#)),
            "steps[0].wait_days"
        );
        assert_eq!(
            field(error(r#"{"name": "a", "steps": [], "workspace_id": "x"}"#)),
            "workspace_id"
        );
        assert_eq!(
            field(error(
                r#"{"name": "a", "steps": [{"wait_days": 1, "status": 2}]}"#
            )),
            "steps[0].status"
        );
    }
}
