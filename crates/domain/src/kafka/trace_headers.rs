//! W3C trace context carried in Kafka record headers, so a trace follows a job from the
//! scheduler through the sender worker.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector(Vec<(String, String)>);

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Headers carrying the current span's context (empty when tracing export is off).
pub fn current_context_headers() -> OwnedHeaders {
    let context = tracing::Span::current().context();
    let mut injector = HeaderInjector(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut injector));
    injector
        .0
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

struct HeaderExtractor<'a>(&'a BorrowedHeaders);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: Option<&BorrowedHeaders>) {
    if let Some(headers) = headers {
        let context = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
        let _ = span.set_parent(context);
    }
}
