//! NUL characters in JSON bodies. PostgreSQL text cannot hold U+0000, so a NUL anywhere in a
//! body (a value or a key, in any field of any endpoint) is refused before the body reaches a
//! handler. JSON can only carry one as the escape `\u0000` (raw control bytes are invalid in
//! JSON strings), so a scan of the bytes finds it cheaply; only a body that has one is parsed
//! again to name the field.

use serde_json::Value;

/// Whether the JSON text contains the escape of U+0000. Backslashes occur only inside strings
/// in valid JSON and each starts an escape, so skipping the escaped character keeps `\\u0000`
/// (a backslash, then text) from counting.
pub fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(offset) = json[i..].iter().position(|b| *b == b'\\') {
        let start = i + offset;
        if json.get(start + 1) == Some(&b'u') && json.get(start + 2..start + 6) == Some(b"0000") {
            return true;
        }
        i = start + 2;
        if i >= json.len() {
            break;
        }
    }
    false
}

/// The path (as the body's field errors name fields, e.g. `steps[0].subject`) of the first
/// string or key holding a NUL, and whether it is a key.
pub fn find_nul(value: &Value) -> Option<(String, bool)> {
    fn walk(value: &Value, path: &str) -> Option<(String, bool)> {
        match value {
            Value::String(text) => text.contains('\0').then(|| (path.to_owned(), false)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            Value::Object(map) => map.iter().find_map(|(key, item)| {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.contains('\0') {
                    let parent = if path.is_empty() { "body" } else { path };
                    return Some((parent.to_owned(), true));
                }
                walk(item, &at)
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => None,
        }
    }
    walk(value, "").map(|(path, key)| {
        if path.is_empty() {
            ("body".to_owned(), key)
        } else {
            (path, key)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_escape_is_found_but_not_an_escaped_backslash() {
        assert!(has_nul_escape(br#"{"name": "a\u0000b"}"#));
        assert!(has_nul_escape(br#"{"name": "\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"name": "\\u0000"}"#));
        assert!(has_nul_escape(br#"{"name": "\u00001"}"#));
        assert!(!has_nul_escape(br#"{"name": "\u0001"}"#));
        assert!(!has_nul_escape(br#"{"name": "plain"}"#));
        assert!(!has_nul_escape(br#"\"#));
        assert!(!has_nul_escape(br#"\u000"#));
    }

    #[test]
    fn the_field_is_named() {
        let body = json!({"name": "ok", "steps": [{"subject": "a"}, {"subject": "b\u{0}"}]});
        assert_eq!(find_nul(&body), Some(("steps[1].subject".into(), false)));
        let key = json!({"attributes": {"pl\u{0}an": 1}});
        assert_eq!(find_nul(&key), Some(("attributes".into(), true)));
        assert_eq!(find_nul(&json!({"a\u{0}": 1})), Some(("body".into(), true)));
        assert_eq!(find_nul(&json!("\u{0}")), Some(("body".into(), false)));
        assert_eq!(find_nul(&json!({"a": [1, true, null]})), None);
    }
}
