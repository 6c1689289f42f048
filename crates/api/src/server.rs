//! The api's HTTP server: the actix-web app on actix-http's HTTP/1.1 service, assembled the
//! way `actix_web::HttpServer` does, with one difference: every connection is wrapped in
//! [`EnvelopedStream`], so even the requests the HTTP layer refuses before routing (a request
//! target over 64 KiB, a malformed head) are answered with the error envelope.

mod parse_errors;

use std::fmt;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Protocol, Request, Response, body::MessageBody};
use actix_service::{
    IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _, fn_service, map_config,
};
use actix_web::Error;
use actix_web::dev::{AppConfig, Server};
use tokio::net::TcpStream;

use self::parse_errors::EnvelopedStream;

/// What the server needs beyond the app.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `api.max_uri_bytes`, named in the 414 for targets the HTTP layer cannot parse.
    pub max_uri_bytes: usize,
    /// How long in-flight requests may finish after shutdown begins.
    pub shutdown_timeout_secs: u64,
}

/// Serves the apps `factory` makes (one per worker thread) on `listener`. Signals are left to
/// the caller, which stops the server through its handle.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    factory: F,
    settings: Settings,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let server = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs)
        .listen("api", listener, move || {
            let max_uri_bytes = settings.max_uri_bytes;
            let app = factory()
                .into_factory()
                .map_err(|error| error.into().error_response());
            // The same timeouts as actix-web's HttpServer.
            let http = HttpService::build()
                .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .finish(map_config(app, |()| AppConfig::default()));
            fn_service(move |io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok((
                    EnvelopedStream::new(io, max_uri_bytes),
                    Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })?
        .run();
    Ok(server)
}
