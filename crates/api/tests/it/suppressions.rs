use serde_json::{Value, json};

use crate::support::{TestApi, assert_error, assert_field_error};

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn addresses_and_domains_are_suppressed_idempotently() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;

    let (status, jane) = api
        .post(
            "/api/v1/suppressions",
            &tenant.key,
            json!({"email": " Jane@Example.com "}),
        )
        .await?;
    assert_eq!(status, 201, "{jane}");
    assert_eq!(jane["email"], "jane@example.com");
    assert_eq!(jane["domain"], Value::Null);
    assert_eq!(jane["reason"], "manual");
    assert_eq!(jane["source"], "api");

    let (status, again) = api
        .post(
            "/api/v1/suppressions",
            &tenant.key,
            json!({"email": "jane@example.com", "reason": "bounced"}),
        )
        .await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(id_of(&again), id_of(&jane));
    assert_eq!(
        again["reason"], "manual",
        "the existing entry is returned unchanged"
    );

    let (status, domain) = api
        .post(
            "/api/v1/suppressions",
            &tenant.key,
            json!({"domain": "@Competitor.io", "reason": "unsubscribed"}),
        )
        .await?;
    assert_eq!(status, 201, "{domain}");
    assert_eq!(domain["domain"], "competitor.io");
    assert_eq!(domain["email"], Value::Null);
    assert_eq!(domain["reason"], "unsubscribed");
    let (status, _) = api
        .post(
            "/api/v1/suppressions",
            &tenant.key,
            json!({"domain": "competitor.io"}),
        )
        .await?;
    assert_eq!(status, 200);

    // Which entries suppress an address: its own and its domain's.
    let (_, for_bob) = api
        .get("/api/v1/suppressions?email=Bob@competitor.io", &tenant.key)
        .await?;
    assert_eq!(
        for_bob["data"].as_array().map(Vec::len),
        Some(1),
        "{for_bob}"
    );
    assert_eq!(for_bob["data"][0]["domain"], "competitor.io");
    let (_, for_sub) = api
        .get(
            "/api/v1/suppressions?email=bob@eu.competitor.io",
            &tenant.key,
        )
        .await?;
    assert_eq!(for_sub["data"], json!([]), "subdomains are not covered");
    let (_, for_jane) = api
        .get("/api/v1/suppressions?email=jane@example.com", &tenant.key)
        .await?;
    assert_eq!(for_jane["data"][0]["id"], jane["id"]);
    let (_, by_domain) = api
        .get("/api/v1/suppressions?domain=COMPETITOR.io", &tenant.key)
        .await?;
    assert_eq!(by_domain["data"][0]["id"], domain["id"]);

    let (status, _) = api
        .delete(
            &format!("/api/v1/suppressions/{}", id_of(&jane)),
            &tenant.key,
        )
        .await?;
    assert_eq!(status, 204);
    let (_, for_jane) = api
        .get("/api/v1/suppressions?email=jane@example.com", &tenant.key)
        .await?;
    assert_eq!(for_jane["data"], json!([]));
    let (status, error) = api
        .delete(
            &format!("/api/v1/suppressions/{}", id_of(&jane)),
            &tenant.key,
        )
        .await?;
    assert_error(status, &error, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn invalid_suppressions_are_422() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    for (body, field) in [
        (json!({}), "email"),
        (json!({"email": "nope"}), "email"),
        (json!({"domain": "localhost"}), "domain"),
        (json!({"domain": "a@b.com"}), "domain"),
        (json!({"email": "a@b.com", "domain": "b.com"}), "domain"),
        (json!({"email": "a@b.com", "reason": "annoying"}), "reason"),
        (json!({"email": "a@b.com", "source": "me"}), "source"),
    ] {
        let (status, error) = api.post("/api/v1/suppressions", &tenant.key, body).await?;
        assert_field_error(status, &error, field);
    }
    let (_, list) = api.get("/api/v1/suppressions", &tenant.key).await?;
    assert_eq!(list["data"], json!([]));
    Ok(())
}

#[tokio::test]
async fn suppressions_need_a_key_and_stay_in_their_workspace() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let a = api.tenant("a").await?;
    let b = api.tenant("b").await?;
    let (status, error) = api
        .request(reqwest::Method::GET, "/api/v1/suppressions", None, None)
        .await?;
    assert_error(status, &error, 401, "unauthorized");

    let (_, b_entry) = api
        .post(
            "/api/v1/suppressions",
            &b.key,
            json!({"email": "x@example.com"}),
        )
        .await?;
    let (status, error) = api
        .delete(&format!("/api/v1/suppressions/{}", id_of(&b_entry)), &a.key)
        .await?;
    assert_error(status, &error, 404, "not_found");
    let (_, a_list) = api
        .get("/api/v1/suppressions?email=x@example.com", &a.key)
        .await?;
    assert_eq!(a_list["data"], json!([]), "b's entry is not a's");
    // The same address in a is a new entry of a's own.
    let (status, _) = api
        .post(
            "/api/v1/suppressions",
            &a.key,
            json!({"email": "x@example.com"}),
        )
        .await?;
    assert_eq!(status, 201);
    let (_, b_list) = api.get("/api/v1/suppressions", &b.key).await?;
    assert_eq!(b_list["data"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn listing_pages_through_every_entry_once() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    for i in 0..7 {
        let (status, _) = api
            .post(
                "/api/v1/suppressions",
                &tenant.key,
                json!({"email": format!("s{i}@example.com")}),
            )
            .await?;
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/suppressions?limit=3".to_owned();
    loop {
        let (status, page) = api.get(&path, &tenant.key).await?;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| s["email"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/api/v1/suppressions?limit=3&cursor={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("s{i}@example.com")).collect();
    assert_eq!(seen, expected, "creation order, each once");
    Ok(())
}
