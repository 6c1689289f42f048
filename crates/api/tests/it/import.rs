use std::collections::HashSet;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{TestApi, assert_error, assert_field_error};

async fn import(api: &TestApi, key: &str, query: &str, csv: &str) -> anyhow::Result<(u16, Value)> {
    api.raw(
        reqwest::Method::POST,
        &format!("/api/v1/contacts/import{query}"),
        Some(key),
        "text/csv",
        csv.as_bytes().to_vec(),
    )
    .await
}

async fn contact(api: &TestApi, key: &str, email: &str) -> anyhow::Result<Value> {
    let (status, page) = api
        .get(&format!("/api/v1/contacts?email={email}"), key)
        .await?;
    anyhow::ensure!(status == 200, "{page}");
    Ok(page["data"][0].clone())
}

async fn count(api: &TestApi, key: &str) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut cursor = String::new();
    loop {
        let (_, page) = api
            .get(&format!("/api/v1/contacts?limit=500&cursor={cursor}"), key)
            .await?;
        total += page["data"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return Ok(total),
        }
    }
}

#[tokio::test]
async fn import_counts_rows_and_names_rejected_ones() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    api.post(
        "/api/v1/contacts",
        &tenant.key,
        json!({"email": "old@example.com", "first_name": "Old", "title": "CEO",
               "attributes": {"plan": "pro", "kept": "yes"}}),
    )
    .await?;

    let csv = "\u{feff}Email,First Name,lastName,Company,Timezone,Plan,LinkedIn URL\r\n\
        jane@example.com,Jane,Doe,\"Example, Inc.\",Europe/Paris,free,https://x.io/jane\r\n\
        not-an-email,Bad,,,,,\r\n\
        ,No,Email,,,,\r\n\
        tz@example.com,Tim,,,Mars/Base,,\r\n\
        \r\n\
        JANE@example.com,Again,,,,,\r\n\
        short@example.com,Short\r\n\
        old@example.com,,,,,enterprise,\r\n\
        \"multi@example.com\",Multi,,,,\"Line\nBreak\",\r\n\
        \"crlf@example.com\",\"Bob\r\nBcc: v@x.invalid\",,,,,\r\n";
    let (status, result) = import(&api, &tenant.key, "", csv).await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["inserted"], 2, "{result}");
    assert_eq!(result["updated"], 1, "{result}");
    assert_eq!(result["rejected_count"], 6, "{result}");
    let rejected: Vec<(u64, String)> = result["rejected"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| {
                    (
                        x["row"].as_u64().unwrap_or_default(),
                        x["reason"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        rejected,
        [
            (3, "invalid email".to_owned()),
            (4, "missing email".to_owned()),
            (5, "invalid timezone".to_owned()),
            (7, "duplicate email in file".to_owned()),
            (8, "expected 7 fields, found 2".to_owned()),
            // A name is one line: a line break could reach a header.
            (
                11,
                "first_name: must be one line without control characters".to_owned()
            ),
        ],
        "{result}"
    );
    assert_eq!(result["rejected"][0]["email"], "not-an-email");

    let jane = contact(&api, &tenant.key, "jane@example.com").await?;
    assert_eq!(
        jane["first_name"], "Jane",
        "the first row with an email wins"
    );
    assert_eq!(jane["last_name"], "Doe");
    assert_eq!(jane["company"], "Example, Inc.");
    assert_eq!(jane["timezone"], "Europe/Paris");
    assert_eq!(
        jane["attributes"],
        json!({"plan": "free", "linked_in_url": "https://x.io/jane"})
    );
    let old = contact(&api, &tenant.key, "old@example.com").await?;
    assert_eq!(old["first_name"], "Old", "empty cells keep stored values");
    assert_eq!(old["title"], "CEO");
    assert_eq!(
        old["attributes"],
        json!({"plan": "enterprise", "kept": "yes"})
    );
    let multi = contact(&api, &tenant.key, "multi@example.com").await?;
    assert_eq!(multi["attributes"]["plan"], "Line\nBreak");
    assert_eq!(count(&api, &tenant.key).await?, 3);
    Ok(())
}

#[tokio::test]
async fn columns_can_be_mapped_renamed_or_skipped() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let csv = "E-mail Address,Given,Notes,Full Name\nann@example.com,Ann,call her,Ann Lee\n";
    let (status, result) = import(
        &api,
        &tenant.key,
        "?map.E-mail%20Address=email&map.given=first_name&map.Notes=-&map.Full%20Name=display_name",
        csv,
    )
    .await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["inserted"], 1);
    let ann = contact(&api, &tenant.key, "ann@example.com").await?;
    assert_eq!(ann["first_name"], "Ann");
    assert_eq!(ann["attributes"], json!({"display_name": "Ann Lee"}));

    // Without the mapping, `Full Name` would be the built-in full_name: refused, with a hint.
    let (status, error) =
        import(&api, &tenant.key, "", "email,Full Name\na@example.com,A\n").await?;
    assert_field_error(status, &error, "header");
    let (status, error) = import(&api, &tenant.key, "", "name,company\nA,B\n").await?;
    assert_field_error(status, &error, "header");
    let (status, error) = import(
        &api,
        &tenant.key,
        "?map.Nope=email",
        "email\na@example.com\n",
    )
    .await?;
    assert_field_error(status, &error, "map.Nope");
    let (status, error) = import(
        &api,
        &tenant.key,
        "?map.email=bad-target",
        "email\na@example.com\n",
    )
    .await?;
    assert_field_error(status, &error, "map.email");
    let (status, error) = import(&api, &tenant.key, "?mapping=x", "email\na@example.com\n").await?;
    assert_field_error(status, &error, "mapping");
    let (status, error) = import(&api, &tenant.key, "", "").await?;
    assert_field_error(status, &error, "header");
    assert_eq!(
        count(&api, &tenant.key).await?,
        1,
        "refused files store nothing"
    );
    Ok(())
}

#[tokio::test]
async fn a_damaged_file_is_400_with_its_row_and_stores_nothing() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let csv = "email,first_name\na@example.com,A\nb@example.com,\"B\nc@example.com,C\n";
    let (status, error) = import(&api, &tenant.key, "", csv).await?;
    assert_error(status, &error, 400, "bad_request");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("row 3"), "{message}");
    let (status, error) = import(&api, &tenant.key, "", "email\n\"a@example.com\"x\n").await?;
    assert_error(status, &error, 400, "bad_request");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("row 2")
    );
    assert_eq!(count(&api, &tenant.key).await?, 0);

    let (status, error) = api
        .raw(
            reqwest::Method::POST,
            "/api/v1/contacts/import",
            Some(&tenant.key),
            "application/json",
            b"{\"email\": \"a@example.com\"}".to_vec(),
        )
        .await?;
    assert_error(status, &error, 400, "bad_request");
    let (status, error) = api
        .raw(
            reqwest::Method::POST,
            "/api/v1/contacts/import",
            None,
            "text/csv",
            b"email\na@example.com\n".to_vec(),
        )
        .await?;
    assert_error(status, &error, 401, "unauthorized");
    Ok(())
}

/// Sends a chunked upload (no Content-Length) straight over TCP, so only the streamed count
/// of bytes can enforce the limit.
async fn chunked_import(api: &TestApi, key: &str, body: &[u8]) -> anyhow::Result<u16> {
    let address = api.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!(
        "POST /api/v1/contacts/import HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    for piece in body.chunks(1000) {
        // The server may answer and close before everything is sent.
        if stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .is_err()
            || stream.write_all(piece).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    Ok(status)
}

#[tokio::test]
async fn uploads_beyond_the_import_limit_are_413() -> anyhow::Result<()> {
    let api = TestApi::start_with(|c| c.api.max_import_bytes = 4096).await?;
    let tenant = api.tenant("acme").await?;
    let mut csv = String::from("email\n");
    for i in 0..500 {
        csv.push_str(&format!("contact{i}@example.com\n"));
    }
    let (status, error) = import(&api, &tenant.key, "", &csv).await?;
    assert_error(status, &error, 413, "payload_too_large");
    assert_eq!(
        chunked_import(&api, &tenant.key, csv.as_bytes()).await?,
        413
    );
    assert_eq!(count(&api, &tenant.key).await?, 0, "nothing stored");

    // Below the limit, the same route works, chunked too.
    let small = "email\nsmall@example.com\n";
    assert_eq!(
        chunked_import(&api, &tenant.key, small.as_bytes()).await?,
        200
    );
    assert_eq!(count(&api, &tenant.key).await?, 1);
    Ok(())
}

#[tokio::test]
async fn large_imports_span_chunks_and_reject_duplicates_across_them() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenant = api.tenant("acme").await?;
    let rows = 12_000;
    let mut csv = String::from("email,first_name,score\n");
    for i in 0..rows {
        csv.push_str(&format!("c{i}@example.com,Name{i},{i}\n"));
    }
    // Repeats of rows 2 and 3 far into later chunks (rows are 1-based with the header first).
    csv.push_str("c0@example.com,Late,x\nC1@EXAMPLE.COM,Late,x\n");
    let (status, result) = import(&api, &tenant.key, "", &csv).await?;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["inserted"], rows, "{result}");
    assert_eq!(result["updated"], 0);
    assert_eq!(result["rejected_count"], 2);
    let rejected_rows: Vec<u64> = result["rejected"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["row"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(rejected_rows, [rows + 2, rows + 3]);
    let first = contact(&api, &tenant.key, "c0@example.com").await?;
    assert_eq!(first["first_name"], "Name0");
    assert_eq!(first["attributes"], json!({"score": "0"}));
    assert_eq!(count(&api, &tenant.key).await?, rows as usize);

    // Importing the same file again updates every contact.
    let (status, again) = import(&api, &tenant.key, "", &csv).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["inserted"], 0);
    assert_eq!(again["updated"], rows);
    let ids: HashSet<String> = HashSet::from([first["id"].as_str().unwrap_or_default().to_owned()]);
    let first_again = contact(&api, &tenant.key, "c0@example.com").await?;
    assert!(ids.contains(first_again["id"].as_str().unwrap_or_default()));
    Ok(())
}
