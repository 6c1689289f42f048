//! The public endpoints. Everything a request needs is in its token: no database
//! lookup on the request path. A token that does not verify, or of the wrong kind for its
//! route, is a 404 without a Location header, so the tracker is never an open redirect.

use std::net::IpAddr;

use actix_web::http::header::{self, CacheControl, CacheDirective, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use domain::events::{Client, EmailEvent, MessageRef};
use domain::tracking_token::{Token, TokenSigner, TrackingAction};
use ipnet::IpNet;

use crate::bots::{BotRules, Hit, HitKind};
use crate::client_ip::{self, IpRecorder};
use crate::pages;
use crate::publish::Publisher;
use crate::recent_opens::RecentOpens;

/// What the handlers share.
pub struct Tracker {
    pub signer: TokenSigner,
    pub rules: BotRules,
    pub recent_opens: RecentOpens,
    pub publisher: Publisher,
    pub ip_recorder: IpRecorder,
    pub trusted_proxies: Vec<IpNet>,
}

pub fn configure(config: &mut web::ServiceConfig, tracker: web::Data<Tracker>) {
    config
        .app_data(tracker)
        .route("/o/{token}", web::get().to(open))
        .route("/c/{token}", web::get().to(click))
        .route("/u/{token}", web::get().to(unsubscribe_page))
        .route("/u/{token}", web::post().to(unsubscribe));
}

/// Who asked, as far as the request says.
struct Requester {
    user_agent: Option<String>,
    ip: Option<IpAddr>,
}

impl Requester {
    fn of(request: &HttpRequest, tracker: &Tracker) -> Self {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let forwarded_for = header("x-forwarded-for");
        Self {
            user_agent: header("user-agent"),
            ip: client_ip::resolve(
                request.peer_addr().map(|a| a.ip()),
                forwarded_for.as_deref(),
                &tracker.trusted_proxies,
            ),
        }
    }

    fn client(self, tracker: &Tracker) -> Client {
        Client {
            user_agent: self.user_agent,
            client_ip: tracker.ip_recorder.record(self.ip),
        }
    }
}

fn verify(tracker: &Tracker, kind: &'static str, token: &str) -> Option<Token> {
    match tracker.signer.decode(token) {
        Ok(token) => Some(token),
        Err(error) => {
            invalid(kind);
            tracing::debug!(%error, kind, "tracking token rejected");
            None
        }
    }
}

fn invalid(kind: &'static str) {
    metrics::counter!("tracker_invalid_tokens_total", "kind" => kind).increment(1);
    hit(kind, "invalid");
}

fn hit(kind: &'static str, outcome: &'static str) {
    metrics::counter!("tracker_hits_total", "kind" => kind, "outcome" => outcome).increment(1);
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().finish()
}

fn outcome(bot_reason: &Option<String>) -> &'static str {
    if bot_reason.is_some() { "bot" } else { "human" }
}

async fn open(
    request: HttpRequest,
    token: web::Path<String>,
    tracker: web::Data<Tracker>,
) -> HttpResponse {
    let raw = token.strip_suffix(".gif").unwrap_or(&token);
    let Some(token) = verify(&tracker, "open", raw) else {
        return not_found();
    };
    let TrackingAction::Open {
        workspace_id,
        enrollment_id,
        message_id,
    } = token.action
    else {
        invalid("open");
        return not_found();
    };
    let sent_at = token.sent_at;
    let requester = Requester::of(&request, &tracker);
    let bot_reason = tracker.rules.classify(&Hit {
        kind: HitKind::Open,
        user_agent: requester.user_agent.as_deref(),
        client_ip: requester.ip,
        sent_at,
        now: Utc::now(),
        open_seen: false,
    });
    tracker.recent_opens.record(message_id);
    hit("open", outcome(&bot_reason));
    tracker.publisher.publish(
        workspace_id,
        enrollment_id,
        EmailEvent::Opened {
            message: MessageRef {
                message_id,
                enrollment_id,
            },
            is_bot: bot_reason.is_some(),
            bot_reason,
            client: requester.client(&tracker),
        },
    );
    HttpResponse::Ok()
        .insert_header(ContentType(actix_web::mime::IMAGE_GIF))
        .insert_header(CacheControl(vec![
            CacheDirective::NoStore,
            CacheDirective::NoCache,
            CacheDirective::MustRevalidate,
        ]))
        .body(pages::PIXEL_GIF.as_slice())
}

async fn click(
    request: HttpRequest,
    token: web::Path<String>,
    tracker: web::Data<Tracker>,
) -> HttpResponse {
    let Some(token) = verify(&tracker, "click", &token) else {
        return not_found();
    };
    let sent_at = token.sent_at;
    let (workspace_id, enrollment_id, message_id) = (
        token.action.workspace_id(),
        token.action.enrollment_id(),
        token.action.message_id(),
    );
    let (kind, url) = match token.action {
        TrackingAction::Click { url, .. } if is_http_url(&url) => (HitKind::Click, url),
        TrackingAction::Trap { .. } => (HitKind::Trap, String::new()),
        _ => {
            invalid("click");
            return not_found();
        }
    };
    let requester = Requester::of(&request, &tracker);
    let bot_reason = tracker.rules.classify(&Hit {
        kind,
        user_agent: requester.user_agent.as_deref(),
        client_ip: requester.ip,
        sent_at,
        now: Utc::now(),
        open_seen: tracker.recent_opens.seen(message_id),
    });
    hit(
        if kind == HitKind::Trap {
            "trap"
        } else {
            "click"
        },
        outcome(&bot_reason),
    );
    let location = url.clone();
    tracker.publisher.publish(
        workspace_id,
        enrollment_id,
        EmailEvent::Clicked {
            message: MessageRef {
                message_id,
                enrollment_id,
            },
            url,
            is_bot: bot_reason.is_some(),
            bot_reason,
            client: requester.client(&tracker),
        },
    );
    if kind == HitKind::Trap {
        return HttpResponse::NoContent()
            .insert_header(CacheControl(vec![CacheDirective::NoStore]))
            .finish();
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .finish()
}

/// Only absolute http(s) URLs without whitespace or control characters are redirected to.
fn is_http_url(url: &str) -> bool {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let scheme_ok = lower.starts_with("http://") || lower.starts_with("https://");
    let host_present = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    scheme_ok && host_present && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

async fn unsubscribe_page(token: web::Path<String>, tracker: web::Data<Tracker>) -> HttpResponse {
    match verify(&tracker, "unsubscribe_page", &token) {
        Some(Token {
            action: TrackingAction::Unsubscribe { .. },
            ..
        }) => {
            hit("unsubscribe_page", "shown");
            HttpResponse::Ok()
                .insert_header(ContentType::html())
                .insert_header(CacheControl(vec![CacheDirective::NoStore]))
                .body(pages::CONFIRM_UNSUBSCRIBE)
        }
        Some(_) => {
            invalid("unsubscribe_page");
            not_found()
        }
        None => not_found(),
    }
}

async fn unsubscribe(
    request: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
    tracker: web::Data<Tracker>,
) -> HttpResponse {
    let Some(token) = verify(&tracker, "unsubscribe", &token) else {
        return not_found();
    };
    let TrackingAction::Unsubscribe {
        workspace_id,
        enrollment_id,
        message_id,
    } = token.action
    else {
        invalid("unsubscribe");
        return not_found();
    };
    if !is_one_click(&body) {
        hit("unsubscribe", "bad_request");
        return HttpResponse::BadRequest()
            .insert_header(ContentType::plaintext())
            .body("expected the body List-Unsubscribe=One-Click (RFC 8058)\n");
    }
    hit("unsubscribe", "unsubscribed");
    let client = Requester::of(&request, &tracker).client(&tracker);
    tracker.publisher.publish(
        workspace_id,
        enrollment_id,
        EmailEvent::Unsubscribed {
            message: MessageRef {
                message_id,
                enrollment_id,
            },
            client,
        },
    );
    HttpResponse::Ok()
        .insert_header(ContentType::html())
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .body(pages::UNSUBSCRIBED)
}

/// Whether a form body holds `List-Unsubscribe=One-Click` (URL-encoded, case as in RFC 8058).
fn is_one_click(body: &[u8]) -> bool {
    let (name, value) = pages::ONE_CLICK_FIELD;
    std::str::from_utf8(body).is_ok_and(|body| {
        body.trim().split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k == name && v.eq_ignore_ascii_case(value))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_redirect() {
        for (url, ok) in [
            ("https://example.com/a?b=c", true),
            ("HTTP://example.com", true),
            ("javascript:alert(1)", false),
            ("//evil.example", false),
            ("https:///path-only", false),
            ("https://", false),
            ("ftp://example.com", false),
            ("https://example.com/\r\nSet-Cookie: x", false),
            ("data:text/html,hi", false),
        ] {
            assert_eq!(is_http_url(url), ok, "{url}");
        }
    }

    #[test]
    fn one_click_body() {
        assert!(is_one_click(b"List-Unsubscribe=One-Click"));
        assert!(is_one_click(b"a=b&List-Unsubscribe=One-Click\n"));
        assert!(!is_one_click(b""));
        assert!(!is_one_click(b"List-Unsubscribe=Maybe"));
    }
}
