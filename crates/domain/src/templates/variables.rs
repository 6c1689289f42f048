//! Where variable values come from. Templates ask a [`VariableSource`] by name; callers
//! decide what answers (a contact today, a sender's fields later, layered as a tuple).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Names [`ContactFields`] answers from its fields. They take precedence over attributes of the
/// same name, even when the field is empty, so a field never answers one contact and an
/// imported attribute another.
pub const CONTACT_FIELDS: [&str; 6] = [
    "email",
    "first_name",
    "last_name",
    "full_name",
    "company",
    "title",
];

/// Every variable a contact answers without attributes: its fields, and `name` (the seed's
/// `{name}`): the full name, or else an attribute `name` (a CSV's "Name" column), so it is
/// not reserved as an attribute name.
pub const BUILT_IN_VARIABLES: [&str; 7] = [
    "email",
    "name",
    "first_name",
    "last_name",
    "full_name",
    "company",
    "title",
];

pub trait VariableSource {
    /// The value of `name`, or `None` when missing. Empty and whitespace-only values count as
    /// missing when rendering, so sources need not filter them.
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// The variables of a contact: the built-in fields and its custom `attributes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactFields {
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    /// A JSON object: strings are used as they are, numbers and booleans as JSON writes them;
    /// null, arrays, objects (and anything when this is not an object) count as missing.
    pub attributes: serde_json::Value,
}

impl ContactFields {
    /// First and last name joined by a space, either alone when the other is missing.
    pub fn full_name(&self) -> Option<String> {
        let first = self.first_name.as_deref().unwrap_or_default();
        let last = self.last_name.as_deref().unwrap_or_default();
        let full = format!("{first} {last}");
        let full = full.trim();
        (!full.is_empty()).then(|| full.to_owned())
    }
}

impl VariableSource for ContactFields {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        fn field(value: &Option<String>) -> Option<Cow<'_, str>> {
            value.as_deref().map(Cow::Borrowed)
        }
        match name {
            "email" => Some(Cow::Borrowed(self.email.as_str())),
            "first_name" => field(&self.first_name),
            "last_name" => field(&self.last_name),
            "full_name" => self.full_name().map(Cow::Owned),
            "name" => self
                .full_name()
                .map(Cow::Owned)
                .or_else(|| self.attribute("name")),
            "company" => field(&self.company),
            "title" => field(&self.title),
            _ => self.attribute(name),
        }
    }
}

impl ContactFields {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.attributes.get(name)? {
            serde_json::Value::String(text) => Some(Cow::Borrowed(text.as_str())),
            serde_json::Value::Number(number) => Some(Cow::Owned(number.to_string())),
            serde_json::Value::Bool(flag) => Some(Cow::Owned(flag.to_string())),
            serde_json::Value::Null
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => None,
        }
    }
}

impl<S: BuildHasher> VariableSource for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        HashMap::get(self, name).map(|value| Cow::Borrowed(value.as_str()))
    }
}

impl VariableSource for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        BTreeMap::get(self, name).map(|value| Cow::Borrowed(value.as_str()))
    }
}

impl<T: VariableSource + ?Sized> VariableSource for &T {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        (**self).get(name)
    }
}

/// The first source that has the name answers, e.g. `(&contact, &sender)`.
impl<A: VariableSource, B: VariableSource> VariableSource for (A, B) {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).or_else(|| self.1.get(name))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contact() -> ContactFields {
        ContactFields {
            email: "ada@example.com".to_owned(),
            first_name: Some("Ada".to_owned()),
            last_name: Some("Lovelace".to_owned()),
            company: None,
            title: None,
            attributes: json!({
                "plan": "pro",
                "seats": 12,
                "score": 4.5,
                "big": 12_345_678_901_234_567_890_u64,
                "trial": true,
                "churned": false,
                "referrer": null,
                "tags": ["a"],
                "address": {"city": "London"},
                "title": "Countess",
            }),
        }
    }

    fn get(source: &impl VariableSource, name: &str) -> Option<String> {
        source.get(name).map(Cow::into_owned)
    }

    #[test]
    fn contact_fields_resolve_fields_then_attributes() {
        let contact = contact();
        let cases: [(&str, Option<&str>); 17] = [
            ("email", Some("ada@example.com")),
            ("name", Some("Ada Lovelace")),
            ("first_name", Some("Ada")),
            ("last_name", Some("Lovelace")),
            ("full_name", Some("Ada Lovelace")),
            ("company", None),
            // The field is missing, and an attribute of the same name does not stand in.
            ("title", None),
            ("plan", Some("pro")),
            ("seats", Some("12")),
            ("score", Some("4.5")),
            ("big", Some("12345678901234567890")),
            ("trial", Some("true")),
            ("churned", Some("false")),
            ("referrer", None),
            ("tags", None),
            ("address", None),
            ("absent", None),
        ];
        for (name, expected) in cases {
            assert_eq!(get(&contact, name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn full_name_uses_whichever_parts_exist() {
        let cases = [
            (Some("Ada"), Some("Lovelace"), Some("Ada Lovelace")),
            (Some("Ada"), None, Some("Ada")),
            (None, Some("Lovelace"), Some("Lovelace")),
            (Some(" "), Some(""), None),
            (None, None, None),
        ];
        for (first, last, expected) in cases {
            let contact = ContactFields {
                first_name: first.map(str::to_owned),
                last_name: last.map(str::to_owned),
                ..ContactFields::default()
            };
            assert_eq!(
                contact.full_name().as_deref(),
                expected,
                "{first:?} {last:?}"
            );
        }
    }

    #[test]
    fn attributes_that_are_not_an_object_are_all_missing() {
        for attributes in [json!(null), json!(["plan"]), json!("plan")] {
            let contact = ContactFields {
                attributes,
                ..ContactFields::default()
            };
            assert_eq!(get(&contact, "plan"), None);
        }
    }

    #[test]
    fn a_pair_asks_the_first_source_then_the_second() {
        let sender: BTreeMap<String, String> = [
            ("sender_name".to_owned(), "Grace".to_owned()),
            ("first_name".to_owned(), "not this".to_owned()),
        ]
        .into();
        let contact = contact();
        let layered = (&contact, &sender);
        assert_eq!(get(&layered, "first_name").as_deref(), Some("Ada"));
        assert_eq!(get(&layered, "sender_name").as_deref(), Some("Grace"));
        assert_eq!(get(&layered, "absent"), None);
    }
}

#[cfg(test)]
mod name_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn name_is_the_full_name_else_an_attribute_of_that_name() {
        let named = |first: Option<&str>, attributes| ContactFields {
            first_name: first.map(str::to_owned),
            attributes,
            ..ContactFields::default()
        };
        let get = |c: &ContactFields| c.get("name").map(Cow::into_owned);
        assert_eq!(
            get(&named(Some("Ada"), json!({"name": "x"}))).as_deref(),
            Some("Ada")
        );
        assert_eq!(
            get(&named(None, json!({"name": "Ada L."}))).as_deref(),
            Some("Ada L.")
        );
        assert_eq!(get(&named(None, json!({}))), None);
    }
}
