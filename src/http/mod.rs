//! HTTP: routes (paths defined once in `domain::paths`), dispatch of each request to its identity
//! domain, and the layers every response goes through. Handlers are thin: they turn a request
//! into one `oauth` call and its result into a response.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod consent;
pub mod device;
pub mod device_authorization;
pub mod discovery;
pub mod extract;
pub mod introspect;
pub mod logout;
pub mod pages;
pub mod response;
pub mod revoke;
pub mod signin;
pub mod token;
pub mod userinfo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::crypto::secrets::random_id;
use crate::domain::paths;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::mtls::ClientCertificate;
use crate::store::MaintenanceStore;
use crate::tls::TlsPeer;
use extract::CurrentDomain;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the whole HTTP application. `with_metrics`: `GET /metrics` is served here (false when
/// `server.metrics_listen` has a listener of its own for it).
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let domain_router = domain_routes().with_state(state.clone());
    let dispatch_state = state.clone();
    let certificate_state = state.clone();
    let slow_request = state.slow_request;
    let mut root = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if with_metrics {
        root = root.route("/metrics", get(metrics_text));
    }
    let root = root
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
        .fallback(move |req: Request| {
            let app = dispatch_state.clone();
            let router = domain_router.clone();
            async move { dispatch(app, router, req).await }
        });
    // The layers every request passes wrap the router once, as one service of a concrete type,
    // and the router takes that service as its only fallback. `Router::layer` would box each
    // layer around every route instead, and a request then clones that chain of boxes, one
    // allocation a layer: 37 % of a `/healthz` request's instructions (bench/instructions.sh).
    // Outermost first: the request id, the trace span, the security headers, the TLS
    // connection's peer, then the proxy's certificate header.
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, RandomRequestId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(answered(slow_request)),
        )
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .layer(middleware::map_request(tls_connection))
        .layer(middleware::from_fn_with_state(
            certificate_state,
            client_certificate_header,
        ))
        .service(root);
    Router::new().fallback_service(stack)
}

/// The application of `server.metrics_listen`: `GET /metrics`, `/healthz` and `/readyz`, with the
/// request id and the security headers; anything else is a 404. Its requests are not counted.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(X_REQUEST_ID, RandomRequestId))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
                .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
        )
}

/// Marks a request that came over the mutual-TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct MtlsConnection;

/// Hands a TLS connection's peer to the request as the plain listener does: its address as
/// `ConnectInfo<SocketAddr>`, its client certificate, and the mutual-TLS listener's mark.
async fn tls_connection(mut req: Request) -> Request {
    if let Some(ConnectInfo(peer)) = req.extensions_mut().remove::<ConnectInfo<TlsPeer>>() {
        req.extensions_mut().insert(ConnectInfo(peer.addr));
        // Judged again when the revocation lists changed or a while passed since: trust is
        // decided per request, not once per keep-alive connection.
        if let Some(c) = peer.certificate {
            req.extensions_mut().insert(c.current());
        }
        if peer.mtls {
            req.extensions_mut().insert(MtlsConnection);
        }
    }
    req
}

/// `server.client_certificate_header`: the client certificate a trusted TLS-terminating proxy
/// passes. The header is always removed; it is read on the main listener only, where the
/// connection itself has no client certificate, from a peer in `server.trusted_proxies` only
/// (anyone else could name any client's public certificate), and only when it appears once.
async fn client_certificate_header(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(name) = &app.client_certificate_header {
        let values: Vec<HeaderValue> = req.headers().get_all(name).iter().cloned().collect();
        req.headers_mut().remove(name);
        let from_proxy = req.extensions().get::<MtlsConnection>().is_none()
            && req.extensions().get::<Arc<ClientCertificate>>().is_none()
            && req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|c| app.trusted_proxies.contains(c.0.ip()));
        if let ([value], true) = (values.as_slice(), from_proxy) {
            match value
                .to_str()
                .ok()
                .map(|v| (v.trim().is_empty(), app.client_trust.from_header(v)))
            {
                Some((_, Some(c))) => {
                    req.extensions_mut().insert(Arc::new(c));
                }
                Some((true, None)) => {}
                _ => {
                    tracing::warn!(header = %name, "the proxy's client certificate header is not a URL-encoded PEM certificate")
                }
            }
        }
    }
    next.run(req).await
}

fn domain_routes() -> Router<AppState> {
    // CORS for browser clients: discovery, JWKS and the token endpoint. No credentials.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route(
            paths::OPENID_CONFIGURATION,
            get(discovery::get_openid_configuration)
                .options(preflight)
                .layer(cors.clone()),
        )
        .route(
            paths::OAUTH_AUTHORIZATION_SERVER,
            get(discovery::get_oauth_authorization_server)
                .options(preflight)
                .layer(cors.clone()),
        )
        .route(
            paths::KEYS,
            get(discovery::get_keys).options(preflight).layer(cors.clone()),
        )
        .route(
            paths::TOKEN,
            post(token::post_token).options(preflight).layer(cors.clone()),
        )
        .route(paths::INTROSPECT, post(introspect::post_introspect))
        .route(
            paths::DEVICE_AUTHORIZATION,
            post(device_authorization::post_device_authorization),
        )
        .route(
            paths::DEVICE_PAGE,
            get(device::get_device).post(device::post_device),
        )
        .route(
            paths::AUTHORIZE,
            get(authorize::authorize).post(authorize::authorize),
        )
        .route(paths::LOGIN, post(signin::post_signin))
        .route(
            paths::CONSENT,
            get(consent::get_consent).post(consent::post_consent),
        )
        .route(
            paths::USERINFO,
            get(userinfo::get_userinfo)
                .post(userinfo::get_userinfo)
                .options(preflight)
                .layer(cors),
        )
        .route(paths::REVOKE, post(revoke::post_revoke))
        .nest(crate::admin::PREFIX, admin::routes())
        .route(
            paths::END_SESSION,
            get(logout::get_end_session).post(logout::post_end_session),
        )
        .route(
            paths::ACCOUNT,
            get(account::get_account).post(account::post_account),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(record_metrics))
}

/// Routes a request to the domain whose issuer host and path prefix match, then runs the
/// domain's routes with the prefix removed.
async fn dispatch(app: AppState, router: Router, mut req: Request) -> Response {
    // RFC 9112 s3.2.2: a request target in absolute form names the host, and the Host header is
    // then ignored.
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let domains = app.domains.load();
    // RFC 8414 s3.1: for an issuer with a path, the well-known segment goes before the path.
    let inserted = path
        .strip_prefix(paths::OAUTH_AUTHORIZATION_SERVER)
        .filter(|p| p.starts_with('/'))
        .and_then(|issuer_path| domains.exact(&host, issuer_path));
    let routed = match inserted {
        Some(d) => Some((d, paths::OAUTH_AUTHORIZATION_SERVER.to_string())),
        None => domains
            .route(&host, &[80, 443], &path)
            .map(|(d, rest)| (d, rest.to_string())),
    };
    let Some((domain, rest)) = routed else {
        return no_such_endpoint(req.headers());
    };
    let Some(ring) = app.rings.load().get(&domain.name).cloned() else {
        return OAuthError::unavailable("the domain's keys are not loaded").into_response();
    };
    let rest = if rest.is_empty() { "/".to_string() } else { rest };
    let new_uri = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    match new_uri.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return no_such_endpoint(req.headers()),
    }
    let https = domain.issuer.starts_with("https://");
    req.extensions_mut().insert(CurrentDomain { domain, ring });
    let mut resp = match router.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    // RFC 6797: an https issuer is to be reached over https only (a browser ignores the header on
    // plain http, so it passes a TLS-terminating proxy's plain hop harmlessly).
    if https {
        resp.headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
    }
    resp
}

/// CORS preflight answers come from the CORS layer; a bare OPTIONS gets 204.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found(headers: HeaderMap) -> Response {
    no_such_endpoint(&headers)
}

fn no_such_endpoint(headers: &HeaderMap) -> Response {
    for_the_asker(headers, OAuthError::new(ErrorCode::NotFound, "no such endpoint"))
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    for_the_asker(
        &headers,
        OAuthError::new(ErrorCode::MethodNotAllowed, "this method is not allowed here"),
    )
}

/// An error a browser asked for (its `Accept` names HTML) as a page; JSON to anything else.
fn for_the_asker(headers: &HeaderMap, err: OAuthError) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        pages::error_page(&err)
    } else {
        err.into_response()
    }
}

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers.
async fn readyz(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error.cause = %e, "readiness check failed");
            metrics::counter!("ostiary_store_errors_total").increment(1);
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_text(State(app): State<AppState>) -> Response {
    // The recorder is global to the process; the store's connections are this server's, read now.
    let text = format!(
        "{}# TYPE ostiary_store_connections gauge\nostiary_store_connections {}\n",
        app.metrics.render(),
        app.store.open_connections()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Counts requests by route and status, and their latency.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let domain = req
        .extensions()
        .get::<CurrentDomain>()
        .map(|c| c.domain.name.clone())
        .unwrap_or_default();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("ostiary_http_requests_total", "route" => route.clone(), "status" => status, "domain" => domain)
        .increment(1);
    metrics::histogram!("ostiary_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&random_id()).ok().map(RequestId::new)
    }
}

/// The span of a request: its id (set by the layer outside this one), method and path.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", request.id = %id, http.method = %req.method(), http.path = %req.uri().path())
}

/// What the trace layer logs of each response: at warn when it came after `slow` or more
/// (`server.slow_request`), with the request id, since the request's own span (at info) may be
/// off; otherwise at debug, as tower-http's default does.
fn answered(slow: Option<Duration>) -> impl Fn(&Response, Duration, &tracing::Span) + Clone {
    // The fields are computed only for an event the filter lets through.
    move |res: &Response, latency: Duration, _: &tracing::Span| {
        if slow.is_some_and(|s| latency >= s) {
            tracing::warn!(
                request.id = %res.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or(""),
                http.status = res.status().as_u16(),
                latency_ms = latency.as_secs_f64() * 1000.0,
                "slow request: answered after server.slow_request or more"
            );
        } else {
            tracing::debug!(
                http.status = res.status().as_u16(),
                latency_ms = latency.as_secs_f64() * 1000.0,
                "finished processing request"
            );
        }
    }
}

/// A header every response carries unless its handler set one.
fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
