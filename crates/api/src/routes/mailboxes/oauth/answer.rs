//! What the callback answers the browser: a redirect to the request's `return_url` with the
//! outcome in its query, or a small HTML page. Neither carries the code or a token, and the
//! page tells browsers not to send the callback's URL (with its code) on as a referrer.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION, REFERRER_POLICY};
use reqwest::Url;
use uuid::Uuid;

use super::callback::Failure;

pub(super) fn respond(return_url: Option<&str>, result: Result<Uuid, Failure>) -> HttpResponse {
    if let Some(mut url) = return_url.and_then(|url| Url::parse(url).ok()) {
        match &result {
            Ok(id) => {
                url.query_pairs_mut()
                    .append_pair("mailbox_id", &id.to_string())
                    .append_pair("status", "connected");
            }
            Err(failure) => {
                url.query_pairs_mut().append_pair("error", failure.code());
            }
        }
        return HttpResponse::SeeOther()
            .insert_header((LOCATION, url.as_str()))
            .insert_header((CACHE_CONTROL, "no-store"))
            .insert_header((REFERRER_POLICY, "no-referrer"))
            .finish();
    }
    let (status, title, text) = match &result {
        Ok(id) => (
            StatusCode::OK,
            "Mailbox connected".to_owned(),
            format!("The mailbox is connected (id {id}). You can close this page."),
        ),
        Err(failure) => (
            StatusCode::BAD_REQUEST,
            "The mailbox was not connected".to_owned(),
            format!("{failure} (error: {}).", failure.code()),
        ),
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((REFERRER_POLICY, "no-referrer"))
        .body(page(&title, &text))
}

fn page(title: &str, text: &str) -> String {
    let title = escape(title);
    let text = escape(text);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{text}</p></body></html>\n"
    )
}

/// Text as HTML element content.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    domain::templates::push_html_escaped(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody as _;

    use super::*;

    fn body(response: HttpResponse) -> String {
        let bytes = response.into_body().try_into_bytes().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn redirects_with_the_outcome_added_to_the_return_urls_query() {
        let id = Uuid::nil();
        let response = respond(Some("https://app.example.com/done?tab=mail"), Ok(id));
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        assert_eq!(
            location,
            format!("https://app.example.com/done?tab=mail&mailbox_id={id}&status=connected")
        );
        let response = respond(Some("https://app.example.com/"), Err(Failure::AccessDenied));
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok());
        assert_eq!(
            location,
            Some("https://app.example.com/?error=access_denied")
        );
    }

    #[test]
    fn without_a_return_url_answers_a_page() {
        let response = respond(None, Err(Failure::StateReplayed));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let page = body(response);
        assert!(page.contains("already used"), "{page}");
        assert!(page.contains("state_replayed"), "{page}");
    }
}
