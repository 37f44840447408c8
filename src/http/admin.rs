//! `{issuer}/admin/v1/...`: the administration API (JSON). Each handler checks the bearer token
//! for its resource, makes one `admin` call and turns the result into JSON. Errors use the body
//! `{"error", "error_description"}`; 401 and 403 carry `WWW-Authenticate: Bearer` (RFC 6750 s3).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::extract::CurrentDomain;
use super::response::{error_response, json_no_store};
use super::userinfo::{bearer_challenge, bearer_error};
use crate::admin::{self, Caller, Paging, Resource};
use crate::app::{AppState, deliver_logouts_soon};
use crate::audit::{self, AuditEvent, Outcome};
use crate::error::{OAuthError, OAuthResult};
use crate::keyring;
use crate::oauth::{Ctx, Peer};
use crate::store::{KeyStore, SqlStore};

/// The administration API's routes, under `admin::PREFIX`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(get_openapi))
        .route("/Users", get(get_users).post(post_users))
        .route("/Users/{id}", get(get_user).patch(patch_user))
        .route("/Users/{id}/password", post(post_user_password))
        .route("/Sessions", get(get_sessions))
        .route("/Sessions/{id}", axum::routing::delete(delete_session))
        .route("/OAuthConsents", get(get_consents))
        .route(
            "/OAuthConsents/{user}/{client}",
            get(get_consent).delete(delete_consent),
        )
        .route("/Clients", get(get_clients))
        .route("/Clients/{id}", get(get_client))
        .route("/Keys", get(get_keys))
        .route("/Keys/rotate", post(post_keys_rotate))
        .route("/Events", get(get_events))
}

/// The bearer token of the Authorization header, if any (none when the header was sent twice,
/// which [`guard`] refuses).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    super::extract::bearer_token(headers)
        .ok()
        .flatten()
        .filter(|t| !t.is_empty())
}

async fn guard(ctx: &Ctx<'_, SqlStore>, headers: &HeaderMap, resource: Resource) -> Result<Caller, Response> {
    let realm = &ctx.domain.issuer;
    let token = super::extract::bearer_token(headers).map_err(|e| bearer_error(&e, realm))?;
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(bearer_challenge(realm));
    };
    admin::authorize(ctx, token, resource)
        .await
        .map_err(|e| bearer_error(&e, realm))
}

fn reply(result: OAuthResult<Value>, status: StatusCode, realm: &str) -> Response {
    match result {
        Ok(v) => json_no_store(status, &v),
        Err(e) => error_response(&e, realm),
    }
}

fn done(result: OAuthResult<()>, realm: &str) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e, realm),
    }
}

/// [`done`] for an operation that may queue back-channel logouts (true): they leave at once.
fn done_then_deliver(app: &AppState, result: OAuthResult<bool>, realm: &str) -> Response {
    if let Ok(true) = result {
        deliver_logouts_soon(app);
    }
    done(result.map(|_| ()), realm)
}

/// A part of the request read before the token is checked, whose error is answered only after
/// it (RFC 6750 s3: a request without credentials gets the 401 challenge, whatever else is wrong
/// with it). [`admin_call!`] takes the value out once the caller is authorised.
trait Checked {
    type Value;
    fn checked(self) -> OAuthResult<Self::Value>;
}

/// The JSON body of a request, read whole up to `server.max_body_bytes` (413 beyond, in the API's
/// error format, as every other endpoint answers).
pub struct AdminBody(OAuthResult<Bytes>);

impl axum::extract::FromRequest<AppState> for AdminBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, app: &AppState) -> Result<Self, Self::Rejection> {
        Ok(AdminBody(super::response::read_body(req.into_body(), app).await))
    }
}

impl Checked for AdminBody {
    type Value = Bytes;
    fn checked(self) -> OAuthResult<Bytes> {
        self.0
    }
}

/// The path's parameters; one that is not UTF-8 once percent-decoded is a 400 in the API's error
/// format (axum's own rejection is plain text).
pub struct AdminPath<T>(OAuthResult<T>);

impl<T> axum::extract::FromRequestParts<AppState> for AdminPath<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(AdminPath(match Path::<T>::from_request_parts(parts, app).await {
            Ok(Path(v)) => Ok(v),
            Err(e) => Err(OAuthError::invalid_request("the path is not valid").with_cause(e)),
        }))
    }
}

impl<T> Checked for AdminPath<T> {
    type Value = T;
    fn checked(self) -> OAuthResult<T> {
        self.0
    }
}

/// The query string of a list, as sent. [`AdminQuery::only`] checks it against what the list
/// takes: a misspelt filter would otherwise be ignored and the whole list answered as if it were
/// filtered (and a repeated one would keep its last value), so both are a 400.
pub struct AdminQuery(Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AdminQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(AdminQuery(
            form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        ))
    }
}

impl Checked for AdminQuery {
    type Value = AdminQuery;
    fn checked(self) -> OAuthResult<AdminQuery> {
        Ok(self)
    }
}

/// The parameters every list takes (admin::Paging).
const PAGING: [&str; 2] = ["startIndex", "count"];

impl AdminQuery {
    /// The parameters, when each is one of `filters` or [`PAGING`] and given once.
    fn only(&self, filters: &[&str]) -> OAuthResult<HashMap<String, String>> {
        let takes: Vec<&str> = PAGING.iter().chain(filters).copied().collect();
        admin::only_names(self.0.iter().map(|(k, _)| k.as_str()), "query parameter", &takes)?;
        let mut m = HashMap::new();
        for (k, v) in &self.0 {
            // As the token endpoint's forms (oauth::params::Params) answer, on every store
            // (PostgreSQL cannot keep a NUL in text).
            if k.contains('\0') || v.contains('\0') {
                return Err(OAuthError::invalid_request("a parameter holds a NUL character"));
            }
            if m.insert(k.clone(), v.clone()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {k} is included more than once"
                )));
            }
        }
        Ok(m)
    }
}

fn json_body(body: &Bytes) -> OAuthResult<Value> {
    match serde_json::from_slice(body) {
        // No name or value holds a NUL (PostgreSQL cannot keep one in text): refused the same
        // on every store.
        Ok(v @ Value::Object(_)) if holds_nul(&v) => Err(OAuthError::invalid_request(
            "a name or value in the body holds a NUL character",
        )),
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(OAuthError::invalid_request("the body must be a JSON object")),
    }
}

/// True when a string or member name anywhere in `v` holds U+0000 (serde_json bounds nesting
/// at 128 levels, so the recursion is bounded too).
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Runs `$body` for an authorised caller of `$resource`: binds `ctx` and `caller`, and takes the
/// value out of each [`Checked`] part named in `[...]` (its error answered now, after the token).
macro_rules! admin_call {
    ($app:expr, $cur:expr, $peer:expr, $headers:expr, $resource:expr, [$($part:ident),*], |$ctx:ident, $caller:ident| $body:expr) => {{
        let keys = $cur.keys_for(&$app, bearer(&$headers)).await;
        let $ctx = $cur.ctx(&$app, &keys, $peer);
        let $caller = match guard(&$ctx, &$headers, $resource).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let _ = &$caller;
        $(
            let $part = match Checked::checked($part) {
                Ok(v) => v,
                Err(e) => return error_response(&e, &$cur.domain.issuer),
            };
        )*
        $body
    }};
}

/// `GET /admin/v1/openapi.json`: the OpenAPI 3 description of this API (public).
pub async fn get_openapi(cur: CurrentDomain) -> Response {
    json_no_store(StatusCode::OK, &openapi(&cur.domain.issuer))
}

/// `GET /Users`.
pub async fn get_users(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    q: AdminQuery,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Users, [q], |ctx, caller| {
        let r = async { admin::list_users(&ctx, Paging::from_query(&q.only(&[])?)?).await }.await;
        reply(r, StatusCode::OK, &cur.domain.issuer)
    })
}

/// `POST /Users`: 201 with the new user.
pub async fn post_users(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    body: AdminBody,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Users, [body], |ctx, caller| {
        let r = async { admin::create_user(&ctx, &caller, &json_body(&body)?).await }.await;
        // RFC 9110 s15.3.2: a 201 names the resource it created.
        let location = r
            .as_ref()
            .ok()
            .and_then(|u| u["id"].as_str())
            .map(|id| format!("{}/admin/v1/Users/{id}", cur.domain.issuer));
        let mut resp = reply(r, StatusCode::CREATED, &cur.domain.issuer);
        if let Some(v) = location.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    })
}

/// `GET /Users/{id}`.
pub async fn get_user(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    id: AdminPath<String>,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Users, [id], |ctx, caller| {
        reply(
            admin::get_user(&ctx, &id).await,
            StatusCode::OK,
            &cur.domain.issuer,
        )
    })
}

/// `PATCH /Users/{id}`: claims and status (`disabled` ends sessions and refresh tokens).
pub async fn patch_user(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    id: AdminPath<String>,
    body: AdminBody,
) -> Response {
    admin_call!(
        app,
        cur,
        peer,
        headers,
        Resource::Users,
        [id, body],
        |ctx, caller| {
            let r = async { admin::update_user(&ctx, &caller, &id, &json_body(&body)?).await }.await;
            // A disabled user's sessions ended: their back-channel logouts leave at once.
            if matches!(r, Ok((_, true))) {
                deliver_logouts_soon(&app);
            }
            reply(r.map(|(user, _)| user), StatusCode::OK, &cur.domain.issuer)
        }
    )
}

/// `POST /Users/{id}/password`: 204; ends sessions and refresh tokens.
pub async fn post_user_password(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    id: AdminPath<String>,
    body: AdminBody,
) -> Response {
    admin_call!(
        app,
        cur,
        peer,
        headers,
        Resource::Users,
        [id, body],
        |ctx, caller| {
            let r = async { admin::reset_password(&ctx, &caller, &id, &json_body(&body)?).await }.await;
            done_then_deliver(&app, r, &cur.domain.issuer)
        }
    )
}

/// `GET /Sessions?user=`.
pub async fn get_sessions(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    q: AdminQuery,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Sessions, [q], |ctx, caller| {
        let r = async {
            let q = q.only(&["user"])?;
            admin::list_sessions(&ctx, q.get("user").map(String::as_str), Paging::from_query(&q)?).await
        }
        .await;
        reply(r, StatusCode::OK, &cur.domain.issuer)
    })
}

/// `DELETE /Sessions/{id}`: 204.
pub async fn delete_session(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    id: AdminPath<String>,
) -> Response {
    admin_call!(
        app,
        cur,
        peer,
        headers,
        Resource::Sessions,
        [id],
        |ctx, caller| {
            done_then_deliver(
                &app,
                admin::revoke_session(&ctx, &caller, &id).await,
                &cur.domain.issuer,
            )
        }
    )
}

/// `GET /OAuthConsents?user=&client=`.
pub async fn get_consents(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    q: AdminQuery,
) -> Response {
    admin_call!(
        app,
        cur,
        peer,
        headers,
        Resource::OAuthConsents,
        [q],
        |ctx, caller| {
            let r = async {
                let q = q.only(&["user", "client"])?;
                let paging = Paging::from_query(&q)?;
                admin::list_consents(
                    &ctx,
                    q.get("user").map(String::as_str),
                    q.get("client").map(String::as_str),
                    paging,
                )
                .await
            }
            .await;
            reply(r, StatusCode::OK, &cur.domain.issuer)
        }
    )
}

/// `GET /OAuthConsents/{user}/{client}`.
pub async fn get_consent(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    path: AdminPath<(String, String)>,
) -> Response {
    admin_call!(
        app,
        cur,
        peer,
        headers,
        Resource::OAuthConsents,
        [path],
        |ctx, caller| {
            let (user, client) = path;
            reply(
                admin::get_consent(&ctx, &user, &client).await,
                StatusCode::OK,
                &cur.domain.issuer,
            )
        }
    )
}

/// `DELETE /OAuthConsents/{user}/{client}`: 204; the user's refresh tokens for the client end.
pub async fn delete_consent(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    path: AdminPath<(String, String)>,
) -> Response {
    admin_call!(
        app,
        cur,
        peer,
        headers,
        Resource::OAuthConsents,
        [path],
        |ctx, caller| {
            let (user, client) = path;
            done_then_deliver(
                &app,
                admin::delete_consent(&ctx, &caller, &user, &client).await,
                &cur.domain.issuer,
            )
        }
    )
}

/// `GET /Clients`.
pub async fn get_clients(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    q: AdminQuery,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Clients, [q], |ctx, caller| {
        let r = q
            .only(&[])
            .and_then(|q| Paging::from_query(&q))
            .map(|p| admin::list_clients(&ctx, p));
        reply(r, StatusCode::OK, &cur.domain.issuer)
    })
}

/// `GET /Clients/{id}`.
pub async fn get_client(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    id: AdminPath<String>,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Clients, [id], |ctx, caller| {
        reply(admin::get_client(&ctx, &id), StatusCode::OK, &cur.domain.issuer)
    })
}

/// `GET /Keys`: the domain's signing keys (public parts) and their state.
pub async fn get_keys(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    q: AdminQuery,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Keys, [q], |ctx, caller| {
        let r = async {
            let paging = Paging::from_query(&q.only(&[])?)?;
            let rows = app.store.list_keys(&ctx.domain.name).await?;
            let items = rows
                .iter()
                .map(|r| {
                    let successor_active = rows
                        .iter()
                        .any(|o| o.alg == r.alg && o.generation > r.generation && o.activates_at <= ctx.now);
                    let state = if r.activates_at > ctx.now {
                        "next"
                    } else if successor_active {
                        "retired"
                    } else {
                        "active"
                    };
                    json!({
                        "kid": r.kid,
                        "alg": r.alg,
                        "generation": r.generation,
                        "state": state,
                        "created": r.created_at,
                        "activates": r.activates_at,
                        "publicJwk": serde_json::from_str::<Value>(&r.public_jwk).unwrap_or(Value::Null),
                    })
                })
                .collect();
            Ok(paging.slice(items))
        }
        .await;
        reply(r, StatusCode::OK, &cur.domain.issuer)
    })
}

/// `POST /Keys/rotate`: stages a new key per algorithm (published now, signing after
/// `keys.publish_ahead`), unless one is still waiting to sign; 200 with the new kids and those
/// already waiting.
pub async fn post_keys_rotate(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Keys, [], |ctx, caller| {
        let r = async {
            let rotation = keyring::rotate(
                &app.store,
                &app.kek,
                &ctx.domain.name,
                &ctx.domain.signing_algs(),
                ctx.now,
                app.keys.publish_ahead.0,
            )
            .await;
            // Audited before anything else can fail: the keys staged are in the store, part-way or
            // not. (Should the ring's refresh below fail after a rotation that did not, the event
            // says success while the answer is an error: the keys are staged, and a retry lists
            // them as alreadyStaged.)
            let outcome = if rotation.failed.is_some() {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            audit::record(
                &app.store,
                ctx.now,
                AuditEvent::new("admin.keys.rotated", &ctx.domain.name, outcome)
                    .by_client(&caller.client_id)
                    .request(&ctx.peer.request_id)
                    .details(rotation.audit_details()),
            )
            .await;
            // Published here at once, what was staged, even part-way.
            let refreshed = cur.ring.refresh(&app.store, &app.kek).await;
            if let Some(e) = rotation.failed {
                return Err(e.into());
            }
            refreshed?;
            let staged: Vec<Value> = rotation
                .already_staged
                .iter()
                .map(|(kid, at)| json!({"kid": kid, "activates": at}))
                .collect();
            Ok(json!({
                "created": rotation.created,
                "activates": ctx.now + app.keys.publish_ahead.0,
                "alreadyStaged": staged,
            }))
        }
        .await;
        reply(r, StatusCode::OK, &cur.domain.issuer)
    })
}

/// `GET /Events?type=&user=&client=&since=&until=`.
pub async fn get_events(
    State(app): State<AppState>,
    cur: CurrentDomain,
    peer: Peer,
    headers: HeaderMap,
    q: AdminQuery,
) -> Response {
    admin_call!(app, cur, peer, headers, Resource::Events, [q], |ctx, caller| {
        // Events of the token endpoint still queued are stored first (for a caller allowed to
        // read them: an unauthenticated request causes no write).
        app.audit_queue.flush().await;
        let r = async {
            let q = q.only(&["type", "user", "client", "since", "until"])?;
            admin::list_events(&ctx, &q, Paging::from_query(&q)?).await
        }
        .await;
        reply(r, StatusCode::OK, &cur.domain.issuer)
    })
}

/// The OpenAPI 3 document of the administration API.
pub fn openapi(issuer: &str) -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    // Every operation: 400 (a query, path or body it does not take), 401 and 403 (RFC 6750 s3,
    // with WWW-Authenticate), 503 (the store unavailable, with Retry-After).
    let std_errors = |extra: &[(&str, Value)]| {
        let mut m = serde_json::Map::new();
        m.insert("400".into(), error.clone());
        m.insert(
            "401".into(),
            json!({"$ref": "#/components/responses/Unauthorized"}),
        );
        m.insert("403".into(), json!({"$ref": "#/components/responses/Forbidden"}));
        m.insert("503".into(), error.clone());
        for (k, v) in extra {
            m.insert((*k).into(), v.clone());
        }
        m
    };
    let ok =
        |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"type": "object"}}}});
    let list = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ListResponse"}}}});
    let no_content = json!({"description": "Done"});
    let paging = json!([
        {"name": "startIndex", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
        {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": admin::MAX_COUNT, "default": admin::DEFAULT_COUNT}}
    ]);
    let q = |name: &str, d: &str| json!({"name": name, "in": "query", "description": d, "schema": {"type": "string"}});
    let p = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let with = |mut base: Value, extra: Vec<Value>| {
        if let Some(a) = base.as_array_mut() {
            a.extend(extra);
        }
        base
    };
    let body = |props: Value, required: &[&str]| {
        let mut schema =
            json!({"type": "object", "properties": props, "additionalProperties": false, "minProperties": 1});
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        json!({"required": true, "content": {"application/json": {"schema": schema}}})
    };
    let username = json!({"type": "string", "minLength": 1, "maxLength": admin::MAX_USERNAME_CHARS, "description": "printable text, without control or invisible characters"});
    let password = json!({"type": "string", "writeOnly": true, "minLength": admin::MIN_PASSWORD_CHARS, "maxLength": admin::MAX_PASSWORD_CHARS});
    let claims = json!({"type": "object", "description": "OpenID Connect Core s5.1 standard claims but sub and updated_at (set by the server) with their types (email_verified and phone_number_verified booleans, address an object of strings, the others strings), groups (strings) and attributes (an object of data of your own); any other name is refused (400)"});
    let too_large = ("413", error.clone());
    let op = |id: &str, summary: &str, params: Value, responses: serde_json::Map<String, Value>| json!({"operationId": id, "summary": summary, "parameters": params, "responses": responses});
    let mut paths = serde_json::Map::new();
    paths.insert("/Users".into(), json!({
        "get": op("listUsers", "List users (User Administrator)", paging.clone(), std_errors(&[("200", list("Users"))])),
        "post": {
            "operationId": "createUser", "summary": "Create a store-managed user (User Administrator)",
            "requestBody": body(json!({"username": username, "password": password.clone(), "claims": claims.clone()}), &["username", "password"]),
            "responses": std_errors(&[("201", {
                let mut created = ok("The user");
                created["headers"] = json!({"Location": {"description": "The new user's URL", "schema": {"type": "string", "format": "uri"}}});
                created
            }), ("409", error.clone()), too_large.clone()])
        }
    }));
    paths.insert("/Users/{id}".into(), json!({
        "get": op("getUser", "Read a user (User Administrator)", json!([p("id")]), std_errors(&[("200", ok("The user")), ("404", error.clone())])),
        "patch": {
            "operationId": "updateUser", "summary": "Update claims (the object given replaces the user's claims) or status (disabled ends sessions and refresh tokens); configuration users are read-only (403) (User Administrator)",
            "parameters": [p("id")],
            "requestBody": body(json!({"claims": claims.clone(), "status": {"type": "string", "enum": ["active", "disabled"]}}), &[]),
            "responses": std_errors(&[("200", ok("The user")), ("404", error.clone()), too_large.clone()])
        }
    }));
    paths.insert("/Users/{id}/password".into(), json!({
        "post": {
            "operationId": "resetUserPassword", "summary": "Set a new password (ends sessions and refresh tokens) (User Administrator)",
            "parameters": [p("id")],
            "requestBody": body(json!({"password": password}), &["password"]),
            "responses": std_errors(&[("204", no_content.clone()), ("404", error.clone()), too_large])
        }
    }));
    paths.insert("/Sessions".into(), json!({
        "get": op("listSessions", "List live sessions (User Administrator)", with(paging.clone(), vec![q("user", "user id")]), std_errors(&[("200", list("Sessions"))]))
    }));
    paths.insert("/Sessions/{id}".into(), json!({
        "delete": op("revokeSession", "End a session (User Administrator)", json!([p("id")]), std_errors(&[("204", no_content.clone()), ("404", error.clone())]))
    }));
    paths.insert("/OAuthConsents".into(), json!({
        "get": op("listConsents", "List consents (Consent Administrator)", with(paging.clone(), vec![q("user", "user id"), q("client", "client_id")]), std_errors(&[("200", list("Consents"))]))
    }));
    paths.insert("/OAuthConsents/{user}/{client}".into(), json!({
        "get": op("getConsent", "Read a consent (Consent Administrator)", json!([p("user"), p("client")]), std_errors(&[("200", ok("The consent")), ("404", error.clone())])),
        "delete": op("deleteConsent", "Withdraw a consent and revoke the user's refresh tokens for the client (Consent Administrator)", json!([p("user"), p("client")]), std_errors(&[("204", no_content.clone()), ("404", error.clone())]))
    }));
    paths.insert("/Clients".into(), json!({
        "get": op("listClients", "List clients, without secrets (Application Administrator)", paging.clone(), std_errors(&[("200", list("Clients"))]))
    }));
    paths.insert("/Clients/{id}".into(), json!({
        "get": op("getClient", "Read a client (Application Administrator)", json!([p("id")]), std_errors(&[("200", ok("The client")), ("404", error.clone())]))
    }));
    paths.insert("/Keys".into(), json!({
        "get": op("listKeys", "List signing keys (Security Administrator)", paging.clone(), std_errors(&[("200", list("Keys"))]))
    }));
    paths.insert("/Keys/rotate".into(), json!({
        "post": op("rotateKeys", "Stage a new signing key per algorithm (Security Administrator)", json!([]), std_errors(&[("200", ok("The new kids"))]))
    }));
    paths.insert("/Events".into(), json!({
        "get": op("listEvents", "List audit events, newest first (Security Administrator)", with(paging, vec![
            q("type", "event type, e.g. signin.failure"), q("user", "user id"), q("client", "client_id"),
            json!({"name": "since", "in": "query", "description": "unix seconds, inclusive", "schema": {"type": "integer"}}),
            json!({"name": "until", "in": "query", "description": "unix seconds, exclusive", "schema": {"type": "integer"}})
        ]), std_errors(&[("200", list("Events"))]))
    }));
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Ostiary administration API",
            "version": "1",
            "description": "Call with an access token from client_credentials of a client holding admin_roles, asked with resource={issuer} (or with neither scope nor resource when the client has no resource-server scope). Each operation names its role; Identity Domain Administrator holds them all. A list refuses a query parameter it does not take, or a repeated one (400)."
        },
        "servers": [{"url": format!("{issuer}{}", admin::PREFIX)}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string", "enum": ["invalid_request", "invalid_token", "insufficient_scope", "forbidden", "not_found", "conflict", "payload_too_large", "method_not_allowed", "server_error", "temporarily_unavailable"]},
                    "error_description": {"type": "string"}
                }},
                "ListResponse": {"type": "object", "properties": {
                    "totalResults": {"type": "integer"}, "startIndex": {"type": "integer"},
                    "itemsPerPage": {"type": "integer"}, "Resources": {"type": "array", "items": {"type": "object"}}
                }}
            },
            "responses": {
                "Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Unauthorized": {
                    "description": "No token (an empty body and only the challenge), or a token that is not valid here (invalid_token)",
                    "headers": {"WWW-Authenticate": {"description": "Bearer realm=\"{issuer}\", with error=\"invalid_token\" when a token was sent", "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                },
                "Forbidden": {
                    "description": "insufficient_scope (no role for the resource; with WWW-Authenticate) or forbidden (a configuration user is read-only)",
                    "headers": {"WWW-Authenticate": {"description": "Bearer realm=\"{issuer}\", error=\"insufficient_scope\"", "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }
            }
        }
    })
}
