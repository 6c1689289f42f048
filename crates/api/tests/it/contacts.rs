use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::{TestApi, assert_error, assert_field_error};

async fn put(api: &TestApi, path: &str, key: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    api.request(reqwest::Method::PUT, path, Some(key), Some(&body))
        .await
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_single_contact_is_created_then_updated_by_email() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;

    let (status, created) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({
                "email": "  Jane.Doe@Example.COM ",
                "first_name": "Jane",
                "last_name": "Doe",
                "company": "Example",
                "timezone": "Europe/Paris",
                "attributes": {"plan": "pro", "seats": 3, "trial": false}
            }),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["email"], "jane.doe@example.com");
    assert_eq!(created["status"], "active");
    assert_eq!(created["timezone"], "Europe/Paris");
    assert_eq!(created["title"], Value::Null);
    let id = id_of(&created);

    // Same email in another case: an update of the same contact. Absent fields stay,
    // attributes merge.
    let (status, updated) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({
                "email": "JANE.DOE@example.com",
                "title": "CTO",
                "first_name": null,
                "attributes": {"plan": "enterprise", "region": "eu"}
            }),
        )
        .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(id_of(&updated), id);

    let (status, read) = api
        .get(&format!("/api/v1/contacts/{id}"), &tenant.key)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(read["first_name"], "Jane", "null keeps the stored value");
    assert_eq!(read["last_name"], "Doe");
    assert_eq!(read["title"], "CTO");
    assert_eq!(
        read["attributes"],
        json!({"plan": "enterprise", "seats": 3, "trial": false, "region": "eu"})
    );
    let (_, page) = api.get("/api/v1/contacts", &tenant.key).await?;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1), "{page}");
    Ok(())
}

#[tokio::test]
async fn a_batch_stores_valid_items_and_lists_the_rejected() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    api.post(
        "/api/v1/contacts",
        &tenant.key,
        json!({"email": "old@example.com", "company": "Old Co", "attributes": {"a": "1"}}),
    )
    .await?;

    let (status, result) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"contacts": [
                {"email": "a@example.com", "first_name": "A"},
                {"email": "not-an-email"},
                {"email": "OLD@example.com", "title": "Boss", "attributes": {"b": "2"}},
                {"email": "b@example.com", "timezone": "Mars/Olympus"},
                {"email": "c@example.com", "attributes": {"first_name": "x"}},
                {"email": "d@example.com", "favourite_colour": "blue"},
                {"first_name": "no email"},
                {"email": "A@example.com", "first_name": "again"},
                "not an object",
                {"email": "e@example.com"}
            ]}),
        )
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["inserted"], 2, "{result}");
    assert_eq!(result["updated"], 1, "{result}");
    let rejected = result["rejected"].as_array().cloned().unwrap_or_default();
    let indexes: Vec<u64> = rejected
        .iter()
        .filter_map(|r| r["index"].as_u64())
        .collect();
    assert_eq!(indexes, [1, 3, 4, 5, 6, 7, 8], "{result}");
    let reason = |i: usize| {
        rejected[i]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(reason(0).starts_with("email:"), "{}", reason(0));
    assert_eq!(rejected[0]["email"], "not-an-email");
    assert!(reason(1).starts_with("timezone:"), "{}", reason(1));
    assert!(
        reason(2).starts_with("attributes.first_name:"),
        "{}",
        reason(2)
    );
    assert!(reason(3).starts_with("favourite_colour:"), "{}", reason(3));
    assert!(reason(4).starts_with("email:"), "{}", reason(4));
    assert_eq!(reason(5), "duplicate email in batch (first at index 0)");
    assert_eq!(reason(6), "item: must be a JSON object");

    // Read back: the valid items are there, the duplicate did not overwrite the first.
    let (_, a) = api
        .get("/api/v1/contacts?email=A@Example.com", &tenant.key)
        .await?;
    assert_eq!(a["data"][0]["first_name"], "A", "{a}");
    let (_, old) = api
        .get("/api/v1/contacts?email=old@example.com", &tenant.key)
        .await?;
    assert_eq!(old["data"][0]["company"], "Old Co");
    assert_eq!(old["data"][0]["title"], "Boss");
    assert_eq!(old["data"][0]["attributes"], json!({"a": "1", "b": "2"}));
    let (_, all) = api.get("/api/v1/contacts", &tenant.key).await?;
    let emails: HashSet<&str> = all["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|c| c["email"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        emails,
        HashSet::from(["old@example.com", "a@example.com", "e@example.com"])
    );
    Ok(())
}

#[tokio::test]
async fn invalid_single_contacts_are_422_naming_each_field() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let cases = [
        (json!({"email": "jane@"}), "email"),
        (json!({"email": "ja ne@example.com"}), "email"),
        (json!({"first_name": "Jane"}), "email"),
        (
            json!({"email": "j@example.com", "timezone": "Europe/Nowhere"}),
            "timezone",
        ),
        (
            json!({"email": "j@example.com", "attributes": {"bad-key": 1}}),
            "attributes.bad-key",
        ),
        (
            json!({"email": "j@example.com", "attributes": {"full_name": "x"}}),
            "attributes.full_name",
        ),
        (
            json!({"email": "j@example.com", "attributes": {"tags": ["a"]}}),
            "attributes.tags",
        ),
        (
            json!({"email": "j@example.com", "attributes": [1, 2]}),
            "attributes",
        ),
        (
            // PostgreSQL would give this back as an integer serde_json cannot read.
            json!({"email": "j@example.com", "attributes": {"big": 1.797_693_134_862_315_7e308}}),
            "attributes.big",
        ),
        (
            json!({"email": "j@example.com", "status": "bounced"}),
            "status",
        ),
        (json!({"email": "j@example.com", "contacts": []}), "email"),
        (json!({"contacts": []}), "contacts"),
        (
            json!({"email": "j@example.com", "first_name": "x".repeat(300)}),
            "first_name",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = api.post("/api/v1/contacts", &tenant.key, body).await?;
        assert_field_error(status, &error, field);
    }
    // Every problem at once, not just the first.
    let (status, error) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"email": "nope", "timezone": "Nowhere", "attributes": {"9x": 1}}),
        )
        .await?;
    assert_field_error(status, &error, "email");
    assert_field_error(status, &error, "timezone");
    assert_field_error(status, &error, "attributes.9x");
    let (_, page) = api.get("/api/v1/contacts", &tenant.key).await?;
    assert_eq!(page["data"], json!([]), "nothing stored");

    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"email": format!("c{i}@example.com")}))
        .collect();
    let (status, error) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"contacts": too_many}),
        )
        .await?;
    assert_field_error(status, &error, "contacts");
    Ok(())
}

#[tokio::test]
async fn contacts_need_a_key_and_stay_in_their_workspace() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let a = api.tenant("a").await?;
    let b = api.tenant("b").await?;
    let (status, error) = api
        .request(reqwest::Method::GET, "/api/v1/contacts", None, None)
        .await?;
    assert_error(status, &error, 401, "unauthorized");
    let (status, error) = api
        .request(
            reqwest::Method::POST,
            "/api/v1/contacts",
            None,
            Some(&json!({"email": "x@example.com"})),
        )
        .await?;
    assert_error(status, &error, 401, "unauthorized");

    let (_, b_contact) = api
        .post(
            "/api/v1/contacts",
            &b.key,
            json!({"email": "same@example.com", "first_name": "B"}),
        )
        .await?;
    let b_id = id_of(&b_contact);
    let path = format!("/api/v1/contacts/{b_id}");

    let (status, error) = api.get(&path, &a.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = put(&api, &path, &a.key, json!({"first_name": "A"})).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.delete(&path, &a.key).await?;
    assert_error(status, &error, 404, "not_found");

    // The same email in workspace a is a different contact; b's is untouched.
    let (status, a_contact) = api
        .post(
            "/api/v1/contacts",
            &a.key,
            json!({"email": "same@example.com", "first_name": "A"}),
        )
        .await?;
    assert_eq!(status, 201, "{a_contact}");
    assert_ne!(id_of(&a_contact), b_id);
    let (_, a_list) = api.get("/api/v1/contacts", &a.key).await?;
    assert_eq!(a_list["data"].as_array().map(Vec::len), Some(1));
    let (status, b_read) = api.get(&path, &b.key).await?;
    assert_eq!(status, 200);
    assert_eq!(b_read["first_name"], "B");
    Ok(())
}

#[tokio::test]
async fn put_updates_only_the_given_fields() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (_, jane) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"email": "jane@example.com", "first_name": "Jane", "company": "Acme",
                   "timezone": "UTC", "attributes": {"plan": "pro", "seats": 2}}),
        )
        .await?;
    let (_, _john) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"email": "john@example.com"}),
        )
        .await?;
    let path = format!("/api/v1/contacts/{}", id_of(&jane));

    let (status, updated) = put(
        &api,
        &path,
        &tenant.key,
        json!({"last_name": "Doe", "company": null, "timezone": "", "attributes": {"plan": "free"}}),
    )
    .await?;
    assert_eq!(status, 200, "{updated}");
    let (_, read) = api.get(&path, &tenant.key).await?;
    assert_eq!(read["first_name"], "Jane", "absent: unchanged");
    assert_eq!(read["last_name"], "Doe");
    assert_eq!(read["company"], Value::Null, "null clears");
    assert_eq!(read["timezone"], Value::Null, "empty clears");
    assert_eq!(
        read["attributes"],
        json!({"plan": "free"}),
        "replaced whole"
    );
    assert_eq!(read, updated);

    let (status, renamed) = put(
        &api,
        &path,
        &tenant.key,
        json!({"email": "Jane.D@Example.com"}),
    )
    .await?;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["email"], "jane.d@example.com");

    let (status, error) = put(
        &api,
        &path,
        &tenant.key,
        json!({"email": "JOHN@example.com"}),
    )
    .await?;
    assert_error(status, &error, 409, "conflict");

    for (body, field) in [
        (json!({"email": "bad"}), "email"),
        (json!({"timezone": "Moon/Base"}), "timezone"),
        (json!({"attributes": {"email": "x"}}), "attributes.email"),
        (json!({"status": "active"}), "status"),
        (json!({"id": id_of(&jane)}), "id"),
    ] {
        let (status, error) = put(&api, &path, &tenant.key, body).await?;
        assert_field_error(status, &error, field);
    }
    let (status, same) = put(&api, &path, &tenant.key, json!({})).await?;
    assert_eq!(status, 200);
    assert_eq!(same["email"], "jane.d@example.com");

    let missing = format!("/api/v1/contacts/{}", uuid::Uuid::now_v7());
    let (status, error) = put(&api, &missing, &tenant.key, json!({"first_name": "x"})).await?;
    assert_error(status, &error, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn delete_removes_the_contact() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let (_, jane) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"email": "jane@example.com"}),
        )
        .await?;
    let path = format!("/api/v1/contacts/{}", id_of(&jane));
    let (status, _) = api.delete(&path, &tenant.key).await?;
    assert_eq!(status, 204);
    let (status, error) = api.get(&path, &tenant.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.delete(&path, &tenant.key).await?;
    assert_error(status, &error, 404, "not_found");
    let (status, error) = api.get("/api/v1/contacts/not-a-uuid", &tenant.key).await?;
    assert_error(status, &error, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn listing_walks_every_page_once_and_filters() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let other = api.tenant("other").await?;
    let contacts: Vec<Value> = (0..23)
        .map(|i| json!({"email": format!("c{i:02}@example.com")}))
        .collect();
    let (status, result) = api
        .post(
            "/api/v1/contacts",
            &tenant.key,
            json!({"contacts": contacts}),
        )
        .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["inserted"], 23);
    api.post(
        "/api/v1/contacts",
        &other.key,
        json!({"email": "c00@example.com"}),
    )
    .await?;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/contacts?limit=5&cursor={c}"),
            None => "/api/v1/contacts?limit=5".to_owned(),
        };
        let (status, page) = api.get(&path, &tenant.key).await?;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        assert!(data.len() <= 5);
        seen.extend(
            data.iter()
                .map(|c| c["id"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        23,
        "no duplicates"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by id");

    let (_, by_email) = api
        .get("/api/v1/contacts?email=%20C07@EXAMPLE.com", &tenant.key)
        .await?;
    assert_eq!(
        by_email["data"].as_array().map(Vec::len),
        Some(1),
        "{by_email}"
    );
    assert_eq!(by_email["data"][0]["email"], "c07@example.com");
    let (_, active) = api
        .get("/api/v1/contacts?status=active&limit=500", &tenant.key)
        .await?;
    assert_eq!(active["data"].as_array().map(Vec::len), Some(23));
    assert_eq!(active["next_cursor"], Value::Null);
    let (_, bounced) = api
        .get("/api/v1/contacts?status=bounced", &tenant.key)
        .await?;
    assert_eq!(bounced["data"], json!([]));

    let (status, error) = api.get("/api/v1/contacts?status=gone", &tenant.key).await?;
    assert_field_error(status, &error, "status");
    let (status, error) = api.get("/api/v1/contacts?limit=0", &tenant.key).await?;
    assert_field_error(status, &error, "limit");
    let (status, error) = api.get("/api/v1/contacts?cursor=nope", &tenant.key).await?;
    assert_field_error(status, &error, "cursor");
    let (status, error) = api.get("/api/v1/contacts?colour=red", &tenant.key).await?;
    assert_field_error(status, &error, "colour");
    assert_eq!(error["error"]["details"][0]["message"], "unknown parameter");
    Ok(())
}
