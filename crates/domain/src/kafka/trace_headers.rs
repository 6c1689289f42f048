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

/// The current span's context as header name and value pairs (empty when no context).
pub fn current_context_pairs() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    let mut injector = HeaderInjector(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut injector));
    injector.0
}

/// Headers carrying the current span's context (empty when tracing export is off).
pub fn current_context_headers() -> OwnedHeaders {
    to_headers(
        current_context_pairs()
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    )
}

/// Kafka headers from name and value pairs, e.g. a context captured earlier and stored.
pub fn to_headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
    pairs
        .into_iter()
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
    if let Some(context) = context_from_headers(headers) {
        let _ = span.set_parent(context);
    }
}

/// The context carried in `headers`, if any, to make a span its child later.
pub fn context_from_headers(headers: Option<&BorrowedHeaders>) -> Option<opentelemetry::Context> {
    headers.map(|headers| {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use rdkafka::message::Headers;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn trace_context_survives_a_trip_through_headers() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let producer_span = tracing::info_span!("produce");
            let headers = producer_span.in_scope(current_context_headers);
            let sent_trace = producer_span.context().span().span_context().trace_id();

            let borrowed = headers.as_borrowed();
            assert!(borrowed.iter().any(|h| h.key == "traceparent"));

            let consumer_span = tracing::info_span!("consume");
            set_parent_from_headers(&consumer_span, Some(borrowed));
            let received_trace = consumer_span.context().span().span_context().trace_id();
            assert_eq!(received_trace, sent_trace);
        });
    }
}
