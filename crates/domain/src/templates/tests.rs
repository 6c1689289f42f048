use std::collections::BTreeSet;

use serde_json::json;

use super::*;

fn contact() -> ContactFields {
    ContactFields {
        email: "ada@example.com".to_owned(),
        first_name: Some("Ada".to_owned()),
        last_name: Some("Lovelace".to_owned()),
        company: Some(String::new()),
        title: None,
        attributes: json!({
            "plan": "pro",
            "seats": 12,
            "score": 4.5,
            "trial": true,
            "referrer": null,
            "address": {"city": "London"},
            "tags": ["vip"],
            "blank": "  ",
            "title": "Countess",
        }),
    }
}

fn parse(source: &str) -> Template {
    Template::parse(source).unwrap_or_else(|error| panic!("{source:?}: {error}"))
}

/// Every distinct rendering over many seeds: the options a template can produce.
fn outcomes(source: &str, html: bool) -> BTreeSet<String> {
    let template = parse(source);
    let contact = contact();
    (0..200)
        .map(|seed| {
            if html {
                template.render_html(&contact, seed)
            } else {
                template.render(&contact, seed)
            }
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

/// `depth` spintax groups, each nested in the first's second option.
fn nested(depth: usize) -> String {
    format!("{}b{}", "{a|".repeat(depth), "}".repeat(depth))
}

#[test]
fn renders_text_variables_fallbacks_and_escapes() {
    let cases = [
        ("Hello", "Hello"),
        ("Hi {{first_name}},", "Hi Ada,"),
        ("Hi {{ first_name }},", "Hi Ada,"),
        ("Hi {first_name},", "Hi Ada,"),
        ("Hi { first_name },", "Hi Ada,"),
        ("{{last_name}} <{{email}}>", "Lovelace <ada@example.com>"),
        ("{{full_name}}", "Ada Lovelace"),
        // fallbacks: present, missing, empty, whitespace-only, none given, empty given
        ("{{first_name|there}}", "Ada"),
        ("Hi {{title|there}}", "Hi there"),
        ("at {{company|your company}}", "at your company"),
        ("{{blank|fallback}}", "fallback"),
        ("[{{nickname}}]", "[]"),
        ("[{{nickname|}}]", "[]"),
        ("{{ nickname | dear reader }}", "dear reader"),
        (r"{{nickname|\{none\} \| \\}}", r"{none} | \"),
        // attributes
        (
            "{{plan}} plan, {{seats}} seats, score {{score}}, trial {{trial}}",
            "pro plan, 12 seats, score 4.5, trial true",
        ),
        ("{{referrer|nobody}}", "nobody"),
        ("{{address|somewhere}}", "somewhere"),
        ("{{tags|none}}", "none"),
        // escapes and literal text
        (r"\{first_name\}", "{first_name}"),
        (r"\{{{first_name}}\}", "{Ada}"),
        (r"a \\ b", r"a \ b"),
        (r"\\{{first_name}}", r"\Ada"),
        (r"a \| b", "a | b"),
        (r"C:\Users\ada", r"C:\Users\ada"),
        (r"ends with \", r"ends with \"),
        ("a | b", "a | b"),
        ("Grüße, {{first_name}} 👋", "Grüße, Ada 👋"),
        ("line one\r\nline two", "line one\r\nline two"),
        ("", ""),
        // spintax whose options all read the same
        ("{Hi|Hi} {{first_name}}", "Hi Ada"),
        ("[{|}]", "[]"),
        ("{{{first_name}}|{{first_name}}}", "Ada"),
    ];
    let contact = contact();
    for (source, expected) in cases {
        assert_eq!(parse(source).render(&contact, 7), expected, "{source:?}");
    }
}

#[test]
fn spintax_produces_each_option() {
    let cases: [(&str, &[&str]); 8] = [
        ("{a|b|c}", &["a", "b", "c"]),
        (
            "{Hi|{Hello|Hey} there}",
            &["Hi", "Hello there", "Hey there"],
        ),
        (
            "{{Hi|Hello} there|Hey}",
            &["Hi there", "Hello there", "Hey"],
        ),
        ("{a|b}{a|b}", &["aa", "ab", "ba", "bb"]),
        ("{|P.S. }done", &["done", "P.S. done"]),
        (
            "{Hi {{first_name}}|Hello {{nickname|friend}}}",
            &["Hi Ada", "Hello friend"],
        ),
        ("{{first_name}|x}", &["Ada", "x"]),
        (r"{a\|b|c}", &["a|b", "c"]),
    ];
    for (source, expected) in cases {
        assert_eq!(outcomes(source, false), set(expected), "{source:?}");
    }
}

#[test]
fn spintax_choices_spread_evenly() {
    let template = parse("{a|b|c}");
    let contact = contact();
    for option in ["a", "b", "c"] {
        let count = (0..300)
            .filter(|&seed| template.render(&contact, seed) == option)
            .count();
        assert!((70..=130).contains(&count), "{option}: {count} of 300");
    }
}

#[test]
fn the_same_seed_makes_the_same_choices() {
    let source = "{Hi|Hello|Hey} {there|friend}, {a|{b|c}|d}";
    let contact = contact();
    for seed in [0, 1, 42, u64::MAX] {
        let first = parse(source).render(&contact, seed);
        assert_eq!(parse(source).render(&contact, seed), first);
        assert_eq!(parse(source).render_html(&contact, seed), first);
    }
}

#[test]
fn choices_are_stable_across_releases() {
    // A message rendered again after an upgrade must read as it did when it was sent, so the
    // choice function may not change; if this fails, it did.
    let template = parse("{a|b|c|d|e|f|g|h}{a|b|c|d|e|f|g|h}");
    let contact = contact();
    let rendered: Vec<String> = [0, 1, 2, 3, 1_000_000, u64::MAX]
        .into_iter()
        .map(|seed| template.render(&contact, seed))
        .collect();
    assert_eq!(rendered, ["fc", "ah", "gf", "ge", "bg", "bf"]);
}

#[test]
fn nesting_is_limited() {
    let deepest = nested(MAX_NESTING);
    let rendered = outcomes(&deepest, false);
    assert!(rendered.is_subset(&set(&["a", "b"])), "{rendered:?}");

    let error = Template::parse(&nested(MAX_NESTING + 1)).map(drop);
    assert_eq!(
        error,
        Err(TemplateError {
            kind: TemplateErrorKind::TooDeep { limit: MAX_NESTING },
            line: 1,
            column: 25,
            offset: 24,
        })
    );
}

#[test]
fn html_rendering_escapes_values_and_fallbacks_only() {
    let contact = ContactFields {
        first_name: Some(r#"<b>"Ada" & 'Bob'</b>"#.to_owned()),
        ..contact()
    };
    let template =
        parse(r#"<p class="hi">Hi {{first_name}} & co, {{nickname|Tom & Jerry <3}} \{ok\}</p>"#);
    assert_eq!(
        template.render_html(&contact, 0),
        r#"<p class="hi">Hi &lt;b&gt;&quot;Ada&quot; &amp; &#39;Bob&#39;&lt;/b&gt; & co, Tom &amp; Jerry &lt;3 {ok}</p>"#
    );
    assert_eq!(
        template.render(&contact, 0),
        r#"<p class="hi">Hi <b>"Ada" & 'Bob'</b> & co, Tom & Jerry <3 {ok}</p>"#
    );
    assert_eq!(
        outcomes("{<b>Hi</b>|<i>Hi</i>}", true),
        set(&["<b>Hi</b>", "<i>Hi</i>"])
    );
}

#[test]
fn variables_lists_names_in_every_option() {
    let template = parse(
        r"Hi {{first_name}} {company|x} {last_name}, {{ title | t }}
          {Hi {{nickname}}|{Yo {plan}|hey}} {{first_name}} \{escaped\}",
    );
    assert_eq!(
        template.variables(),
        set(&["first_name", "last_name", "nickname", "plan", "title"])
    );
    assert_eq!(parse("no variables {a|b}").variables(), BTreeSet::new());
}

#[test]
fn rejects_malformed_templates_with_their_position() {
    use TemplateErrorKind::*;
    let invalid = |name: &str| InvalidVariableName {
        name: name.to_owned(),
    };
    let cases = [
        // (source, kind, line, column, byte offset)
        ("Hi {{first_name", UnclosedVariable, 1, 4, 3),
        ("one\n  {{first_name}", UnclosedVariable, 2, 3, 6),
        ("{{first_name}", UnclosedVariable, 1, 1, 0),
        ("{a|b", UnclosedGroup, 1, 1, 0),
        ("x {a|{b|c}", UnclosedGroup, 1, 3, 2),
        ("{a|{b|c", UnclosedGroup, 1, 4, 3),
        ("é {x", UnclosedGroup, 1, 3, 3),
        ("a } b", UnexpectedClose, 1, 3, 2),
        ("{a|b}}", UnexpectedClose, 1, 6, 5),
        ("{{first_name}}}", UnexpectedClose, 1, 15, 14),
        ("a\r\n}", UnexpectedClose, 2, 1, 3),
        ("{{}}", EmptyVariableName, 1, 1, 0),
        ("x {{  }}", EmptyVariableName, 1, 3, 2),
        ("{{|there}}", EmptyVariableName, 1, 1, 0),
        ("{{first name}}", invalid("first name"), 1, 3, 2),
        ("{{ 1st }}", invalid("1st"), 1, 4, 3),
        ("{{first-name|x}}", invalid("first-name"), 1, 3, 2),
        (r"{{a\|b}}", invalid(r"a\|b"), 1, 3, 2),
        ("{{a|b|c}}", MultipleFallbacks, 1, 6, 5),
        ("{}", NotAConstruct, 1, 1, 0),
        ("{Hi there}", NotAConstruct, 1, 1, 0),
        ("{first name}", NotAConstruct, 1, 1, 0),
        ("p { color: red }", NotAConstruct, 1, 3, 2),
        ("{{first_name} }", NotAConstruct, 1, 1, 0),
        // A fallback cannot hold braces: this is read as a group around spintax.
        ("{{name|{x}}}", NotAConstruct, 1, 1, 0),
    ];
    for (source, kind, line, column, offset) in cases {
        assert_eq!(
            Template::parse(source).map(drop),
            Err(TemplateError {
                kind,
                line,
                column,
                offset
            }),
            "{source:?}"
        );
    }
}

#[test]
fn rejects_templates_over_the_length_limit() {
    assert!(validate(&"a".repeat(MAX_TEMPLATE_BYTES)).is_ok());
    let too_long = TemplateErrorKind::TooLong {
        limit: MAX_TEMPLATE_BYTES,
    };
    assert_eq!(
        validate(&"a".repeat(MAX_TEMPLATE_BYTES + 1)),
        Err(TemplateError {
            kind: too_long.clone(),
            line: 1,
            column: MAX_TEMPLATE_BYTES + 1,
            offset: MAX_TEMPLATE_BYTES,
        })
    );
    // The limit falls inside a two-byte character: the error points after it.
    let source = format!("x{}", "é".repeat(MAX_TEMPLATE_BYTES / 2));
    assert_eq!(
        validate(&source),
        Err(TemplateError {
            kind: too_long,
            line: 1,
            column: MAX_TEMPLATE_BYTES / 2 + 2,
            offset: MAX_TEMPLATE_BYTES + 1,
        })
    );
}

#[test]
fn errors_display_their_position_first() -> Result<(), String> {
    let error = validate("x\n    {{a").err().ok_or("accepted")?;
    assert_eq!(error.to_string(), "line 2, column 5: unclosed `{{`");
    assert_eq!(error.message(), "unclosed `{{`");
    let messages = [
        ("{a", "unclosed `{`"),
        ("}", r"unexpected `}`: write `\}` for a literal brace"),
        (
            "{{a|b|c}}",
            "a variable takes at most one fallback, as in `{{name|fallback}}`",
        ),
        (
            "{x y}",
            r"`{` starts neither a variable (`{name}`) nor spintax (`{a|b}`): write `\{` for a literal brace",
        ),
    ];
    for (source, expected) in messages {
        let error = validate(source).err().ok_or(source)?;
        assert_eq!(error.message(), expected);
    }
    Ok(())
}

#[test]
fn a_variable_without_a_value_or_fallback_is_missing() {
    let contact = contact();
    let missing = |source: &str| parse(source).missing_variable(&contact, 7);
    assert_eq!(missing("Hi {name}, welcome!"), None, "name is built in");
    assert_eq!(missing("Hi {{first_name}} at {{plan}}"), None);
    assert_eq!(
        missing("From {{company}}"),
        Some("company".into()),
        "empty field"
    );
    assert_eq!(
        missing("Dear {{title}}"),
        Some("title".into()),
        "missing field"
    );
    assert_eq!(
        missing("{{blank}}"),
        Some("blank".into()),
        "whitespace only"
    );
    assert_eq!(missing("{{referrer}} {{address}}"), Some("referrer".into()));
    assert_eq!(missing("{{nickname}}"), Some("nickname".into()));
    assert_eq!(
        missing("{{company|your team}} {{title|}}"),
        None,
        "fallbacks fill"
    );
}

#[test]
fn only_the_chosen_spintax_options_count() {
    let contact = contact();
    let template = parse("{Hi {{first_name}}|Dear {{title}}}");
    let mut seen = BTreeSet::new();
    for seed in 0..100 {
        let text = template.render(&contact, seed);
        let missing = template.missing_variable(&contact, seed);
        // Missing exactly when the option with the hole was chosen.
        assert_eq!(
            missing.is_some(),
            text.starts_with("Dear"),
            "seed {seed}: {text}"
        );
        seen.insert(missing.is_some());
    }
    assert_eq!(seen.len(), 2, "both options were chosen at some seed");
}

#[test]
fn required_variables_are_those_without_a_fallback() {
    let template = parse("{Hi {{first_name}}|Hey {{nickname|you}}} {{plan}} {{plan|x}}");
    assert_eq!(template.required_variables(), set(&["first_name", "plan"]));
}

#[test]
fn html_escaping_keeps_every_other_character_as_it_is() {
    for (text, escaped) in [
        ("", ""),
        ("plain", "plain"),
        ("&<>\"'", "&amp;&lt;&gt;&quot;&#39;"),
        (
            "Ça <va> & \"très\" 'bien' 🙂",
            "Ça &lt;va&gt; &amp; &quot;très&quot; &#39;bien&#39; 🙂",
        ),
    ] {
        let mut out = String::from("before:");
        push_html_escaped(&mut out, text);
        assert_eq!(out, format!("before:{escaped}"), "{text}");
    }
}
