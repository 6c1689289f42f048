use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use serde_json::json;

use crate::contract::contract;
use crate::support::TestApi;

#[tokio::test]
async fn the_served_document_is_the_committed_one() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    for path in ["/api/v1/openapi.json", "/api/v1/openapi-v3.json"] {
        let (status, served) = api.request(reqwest::Method::GET, path, None, None).await?;
        assert_eq!(status, 200, "{path}");
        assert_eq!(served["openapi"], "3.0.3", "{path}");
        assert!(
            &served == contract().document(),
            "{path} differs from docs/openapi.json"
        );
    }
    Ok(())
}

#[tokio::test]
async fn swagger_ui_shows_the_document() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for path in ["/swagger", "/api/v1/swagger"] {
        let response = client.get(format!("{}{path}", api.base_url)).send().await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        assert!(
            location.ends_with("index.html?url=/api/v1/openapi.json"),
            "{path} redirects to {location:?}"
        );
    }
    let client = reqwest::Client::new();
    for path in ["/swagger/index.html", "/api/v1/swagger/index.html"] {
        let response = client.get(format!("{}{path}", api.base_url)).send().await?;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.text().await?.contains("swagger"), "{path}");
    }
    let (status, _) = api
        .request(reqwest::Method::GET, "/swagger/no-such-file.js", None, None)
        .await?;
    assert_eq!(status, 404, "unknown files are 404, not a panic");
    Ok(())
}

/// The checker itself: it must refuse what the document does not allow.
#[test]
fn the_contract_checker_catches_drift() {
    let contract = contract();
    let mut json_headers = HeaderMap::new();
    json_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let envelope = json!({"error": {"code": "not_found", "message": "sequence not found"}});
    let bytes = |v: &serde_json::Value| v.to_string().into_bytes();
    let id = "/api/v1/sequences/01939b8e-6e6a-7cc3-9d3c-2f0e7f3b1a01";

    // Fine: a documented error.
    assert!(
        contract
            .check("GET", id, 404, &json_headers, &bytes(&envelope))
            .is_ok()
    );
    // A status the operation does not document.
    let error = contract.check("GET", id, 418, &json_headers, &bytes(&envelope));
    assert!(format!("{error:?}").contains("does not list"), "{error:?}");
    // A body that is not the envelope.
    let error = contract.check("GET", id, 404, &json_headers, b"{\"oops\": 1}");
    assert!(format!("{error:?}").contains("does not match"), "{error:?}");
    // A field the document does not describe.
    let error = contract.check(
        "DELETE",
        "/api/v1/api-keys/x",
        404,
        &json_headers,
        &bytes(&json!({"error": {"code": "x", "message": "y", "extra": true}})),
    );
    assert!(format!("{error:?}").contains("/error"), "{error:?}");
    // null where the document has no null.
    let key = json!({"id": "01939b8e-6e6a-7cc3-9d3c-2f0e7f3b1a01", "name": null, "prefix": "sk",
                     "key": "sk_x", "created_at": "2026-01-01T00:00:00Z"});
    let error = contract.check("POST", "/api/v1/api-keys", 201, &json_headers, &bytes(&key));
    assert!(format!("{error:?}").contains("/name"), "{error:?}");
    // Documented headers must be there.
    let unauthorized = json!({"error": {"code": "unauthorized", "message": "x"}});
    let error = contract.check("GET", id, 401, &json_headers, &bytes(&unauthorized));
    assert!(
        format!("{error:?}").contains("WWW-Authenticate"),
        "{error:?}"
    );
    let mut challenge = json_headers.clone();
    challenge.insert("www-authenticate", HeaderValue::from_static("Bearer"));
    assert!(
        contract
            .check("GET", id, 401, &challenge, &bytes(&unauthorized))
            .is_ok()
    );
    // Unknown paths must be 404 with the envelope; undocumented methods 405 with Allow.
    assert!(
        contract
            .check(
                "GET",
                "/api/v1/nothing",
                404,
                &json_headers,
                &bytes(&envelope)
            )
            .is_ok()
    );
    assert!(
        contract
            .check("GET", "/api/v1/nothing", 200, &json_headers, b"{}")
            .is_err()
    );
    let mut allow = json_headers.clone();
    allow.insert("allow", HeaderValue::from_static("GET, POST"));
    let method_envelope = json!({"error": {"code": "method_not_allowed", "message": "x"}});
    assert!(
        contract
            .check(
                "PATCH",
                "/api/v1/api-keys",
                405,
                &allow,
                &bytes(&method_envelope)
            )
            .is_ok()
    );
    assert!(
        contract
            .check(
                "PATCH",
                "/api/v1/api-keys",
                405,
                &json_headers,
                &bytes(&method_envelope)
            )
            .is_err()
    );
}
