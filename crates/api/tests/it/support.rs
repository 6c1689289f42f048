//! A running api on its own database, and a small JSON client for it.

use api::Application;
use domain::testing::{TestDatabase, test_config_for};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::contract;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
/// `security.encryption_keys` of every test server (unless a test changes it).
pub const ENCRYPTION_KEYS: &str = "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct TestApi {
    pub base_url: String,
    /// Kept so the database lives as long as the server using it.
    db: TestDatabase,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A workspace created through the API, with its first key.
pub struct Tenant {
    pub id: String,
    pub key: String,
}

impl TestApi {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(
        adjust: impl FnOnce(&mut domain::config::Config),
    ) -> anyhow::Result<Self> {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0")?, adjust).await
    }

    /// On `listener`, for tests that must know the address before the server starts (an
    /// OAuth client's redirect URI).
    pub async fn start_on(
        listener: std::net::TcpListener,
        adjust: impl FnOnce(&mut domain::config::Config),
    ) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let mut config = test_config_for(&db)?;
        config.api.admin_token = ADMIN_TOKEN.to_owned().into();
        config.security.encryption_keys = ENCRYPTION_KEYS.to_owned().into();
        adjust(&mut config);
        let app = Application::build_with_listener(config, listener)?;
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Ok(Self {
            base_url,
            db,
            client: reqwest::Client::new(),
            shutdown,
        })
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(method, path, request).await
    }

    /// Sends, checks the answer against the committed OpenAPI document (`contract`), and
    /// returns the status and the JSON body (null when there is none).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(u16, Value)> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        contract::contract().check(method.as_str(), path, status, &headers, &bytes)?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// `GET url` as a browser would, without following a redirect (so the test sees where
    /// it goes), checked against the document: the status, the headers and the body text.
    pub async fn browse(
        &self,
        url: &str,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = client.get(url).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let path = url.strip_prefix(&self.base_url).unwrap_or(url);
        contract::contract().check("GET", path, status, &headers, &bytes)?;
        Ok((
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(method, path, request).await
    }

    pub async fn get(&self, path: &str, key: &str) -> anyhow::Result<(u16, Value)> {
        self.request(reqwest::Method::GET, path, Some(key), None)
            .await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.request(reqwest::Method::POST, path, Some(key), Some(&body))
            .await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.request(reqwest::Method::PUT, path, Some(key), Some(&body))
            .await
    }

    /// A connection to the server's database, to check what it stored.
    pub async fn db(&self) -> anyhow::Result<diesel_async::AsyncPgConnection> {
        self.db.connect().await
    }

    /// The server's database, to count or change rows directly.
    pub fn database(&self) -> &TestDatabase {
        &self.db
    }

    pub async fn delete(&self, path: &str, key: &str) -> anyhow::Result<(u16, Value)> {
        self.request(reqwest::Method::DELETE, path, Some(key), None)
            .await
    }

    pub async fn tenant(&self, name: &str) -> anyhow::Result<Tenant> {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/api/v1/workspaces",
                Some(ADMIN_TOKEN),
                Some(&json!({ "name": name })),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "workspace creation answered {status}: {body}"
        );
        Ok(Tenant {
            id: body["workspace"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            key: body["api_key"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// Asserts the error envelope: status, code, and (for 422) the named field.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

pub fn assert_field_error(status: u16, body: &Value, field: &str) {
    assert_error(status, body, 422, "validation_failed");
    assert_names_field(body, field);
}

/// A 409 naming `field`: valid in itself, but it does not fit what is stored.
pub fn assert_conflicting_field(status: u16, body: &Value, field: &str) {
    assert_error(status, body, 409, "conflict");
    assert_names_field(body, field);
}

fn assert_names_field(body: &Value, field: &str) {
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        fields.contains(&field),
        "expected an error on `{field}`: {body}"
    );
}
