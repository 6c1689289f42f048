//! The query-string extractor of every endpoint: values are checked for control characters
//! (a NUL would reach PostgreSQL, which cannot store it, and no query parameter is more than
//! one line), then deserialised with the name of any failing parameter. Every problem is a
//! 422 naming the parameter; parser internals never reach the client.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use paperclip::actix::OperationModifier;
use paperclip::v2::models::{DefaultOperationRaw, DefaultSchemaRaw};
use paperclip::v2::schema::Apiv2Schema;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse(req.query_string()).map(Query))
    }
}

/// Parses a raw query string (without the `?`) into `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let errors: Vec<FieldError> = pairs
        .iter()
        .filter_map(|(key, value)| {
            if key.chars().any(char::is_control) {
                Some(FieldError::new(
                    "query",
                    "parameter names must not contain control characters",
                ))
            } else if value.chars().any(char::is_control) {
                Some(FieldError::new(
                    key.clone(),
                    "must not contain control characters",
                ))
            } else {
                None
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(deserializer).map_err(|error| {
        let field = match error.path().to_string() {
            path if path.is_empty() || path == "." => "query".to_owned(),
            path => path,
        };
        ApiError::Validation(vec![FieldError::new(field, message(error.inner()))])
    })
}

/// A message for a parameter that did not deserialise, in the API's words.
fn message(error: &serde_urlencoded::de::Error) -> String {
    let text = error.to_string();
    if text.contains("digit") || text.contains("integer") || text.contains("too large") {
        "must be an integer in range".to_owned()
    } else if text.starts_with("unknown field") {
        "unknown parameter".to_owned()
    } else if text.starts_with("duplicate field") {
        "given more than once".to_owned()
    } else if text.contains("provided string was not `true` or `false`") {
        "must be true or false".to_owned()
    } else if let Some(rest) = text.strip_prefix("unknown variant ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        format!("must be {expected}")
    } else {
        "invalid value".to_owned()
    }
}

impl<T: Apiv2Schema> Apiv2Schema for Query<T> {
    fn name() -> Option<String> {
        T::name()
    }

    fn raw_schema() -> DefaultSchemaRaw {
        T::raw_schema()
    }
}

// Only to document the parameters as paperclip documents its own extractor.
#[allow(clippy::disallowed_types)]
impl<T: Apiv2Schema> OperationModifier for Query<T> {
    fn update_parameter(op: &mut DefaultOperationRaw) {
        paperclip::actix::web::Query::<T>::update_parameter(op);
    }

    fn update_definitions(map: &mut std::collections::BTreeMap<String, DefaultSchemaRaw>) {
        paperclip::actix::web::Query::<T>::update_definitions(map);
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct List {
        limit: Option<i64>,
        email: Option<String>,
        archived: Option<bool>,
    }

    fn fields(query: &str) -> Vec<(String, String)> {
        match parse::<List>(query) {
            Ok(list) => panic!("parsed {list:?}"),
            Err(ApiError::Validation(details)) => {
                details.into_iter().map(|d| (d.field, d.message)).collect()
            }
            Err(other) => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn values_parse() -> Result<(), ApiError> {
        let list: List = parse("limit=5&email=a%40b.c&archived=true&other=x")?;
        assert_eq!(list.limit, Some(5));
        assert_eq!(list.email.as_deref(), Some("a@b.c"));
        assert_eq!(list.archived, Some(true));
        let empty: List = parse("")?;
        assert_eq!(empty.limit, None);
        Ok(())
    }

    #[test]
    fn control_characters_are_refused_with_the_parameter_named() {
        assert_eq!(fields("email=%00")[0].0, "email");
        assert_eq!(fields("email=a%0D%0Ab")[0].0, "email");
        assert_eq!(fields("email=%7F")[0].0, "email");
        assert_eq!(fields("e%00mail=x")[0].0, "query");
    }

    #[test]
    fn bad_values_name_the_parameter_without_parser_internals() {
        let errors = fields("limit=abc");
        assert_eq!(errors[0].0, "limit");
        assert_eq!(errors[0].1, "must be an integer in range");
        assert_eq!(fields("limit=99999999999999999999")[0].0, "limit");
        assert_eq!(
            fields("archived=maybe")[0],
            ("archived".into(), "must be true or false".into())
        );
        assert_eq!(fields("limit=1&limit=2")[0].1, "given more than once");
    }
}
