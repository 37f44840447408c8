//! `GET|POST {issuer}/account`: the person's account page. It lists the applications they
//! consented to and where they are signed in, and lets them withdraw a consent or sign out
//! everywhere (CSRF-protected forms). Without a session, the sign-in page first, then back here.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::extract::CurrentDomain;
use super::pages::{
    clear_session_cookie, csrf_cookie, csrf_token, current_session, ensure_pending, error_page, login_page,
    page, read_form, scope_description, see_other, with_cookie,
};
use crate::app::{AppState, deliver_logouts_soon};
use crate::crypto::secrets::ct_eq;
use crate::domain::{Domain, paths};
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::authorize::{AuthorizationRequest, redirect_with};
use crate::oauth::logout;
use crate::oauth::params::Params;
use crate::store::admin::AdminStore;
use crate::store::logout::LogoutStore;
use crate::store::signin::{SessionRow, SignInStore};
use crate::views::{AccountConsent, AccountPage, AccountSession, ConsentScope};

/// `GET {issuer}/account`: the page, or the sign-in page that comes back to it.
pub async fn get_account(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let d = &cur.domain;
    let query = Params::parse(parts.uri.query().unwrap_or("").as_bytes(), &[]).unwrap_or_default();
    let session = match current_session(&app, d, &parts.headers).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    let Some(session) = session else {
        let req = AuthorizationRequest {
            account: true,
            ..AuthorizationRequest::default()
        };
        return match ensure_pending(&app, d, &parts.headers, &req, None).await {
            Ok((row, csrf, set)) => with_cookie(
                login_page(d, "your account", &row.id, &csrf, "", None, StatusCode::OK),
                set,
            ),
            Err(e) => error_page(&e),
        };
    };
    let notice = match query.get("done") {
        Some("withdrawn") => Some("Access removed."),
        _ => None,
    };
    account_page(&app, d, &parts.headers, &session, notice).await
}

/// `POST {issuer}/account`: `action=withdraw` (with `client_id`) or `action=everywhere`.
pub async fn post_account(State(app): State<AppState>, cur: CurrentDomain, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let d = &cur.domain;
    let form = match read_form(&app, body, &[]).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    // The form's token must be this browser's CSRF cookie (double submit).
    let verified = csrf_cookie(d, &parts.headers).is_some_and(|c| {
        form.get("csrf")
            .is_some_and(|f| ct_eq(c.as_bytes(), f.as_bytes()))
    });
    if !verified {
        return error_page(&OAuthError::new(
            ErrorCode::AccessDenied,
            "the form could not be verified; start again",
        ));
    }
    let session = match current_session(&app, d, &parts.headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other(&d.url(paths::ACCOUNT)),
        Err(e) => return error_page(&e),
    };
    let now = app.clock.now();
    match (form.get("action"), form.get("client_id")) {
        (Some("withdraw"), Some(client_id)) => {
            let actor = format!("user:{}", session.user_id);
            let request_id = super::extract::request_id_of(&parts.headers);
            match logout::withdraw_consent(
                &app.store,
                d,
                &session.user_id,
                client_id,
                &actor,
                &request_id,
                now,
            )
            .await
            {
                Ok(w) => {
                    if w.queued {
                        deliver_logouts_soon(&app);
                    }
                    tracing::info!(domain = %d.name, user.id = %session.user_id, client_id = %client_id, "consent withdrawn");
                    see_other(&redirect_with(&d.url(paths::ACCOUNT), &[("done", "withdrawn")]))
                }
                Err(e) => error_page(&e),
            }
        }
        (Some("everywhere"), _) => match logout::end_all_sessions(&app.store, d, &session.user_id, now).await
        {
            Ok((served, queued)) => {
                if queued {
                    deliver_logouts_soon(&app);
                }
                tracing::info!(domain = %d.name, user.id = %session.user_id, "signed out everywhere");
                // Front-Channel Logout 1.0: every client of every ended session, in iframes.
                with_cookie(
                    super::logout::signed_out_everywhere(d, &served),
                    clear_session_cookie(d),
                )
            }
            Err(e) => error_page(&e),
        },
        _ => error_page(&OAuthError::invalid_request("choose an action")),
    }
}

/// The page of a signed-in person.
async fn account_page(
    app: &AppState,
    d: &Domain,
    headers: &HeaderMap,
    s: &SessionRow,
    notice: Option<&str>,
) -> Response {
    let now = app.clock.now();
    let username = match app.store.find_user_by_id(&d.name, &s.user_id).await {
        Ok(Some(u)) => u.username,
        _ => String::new(),
    };
    let consents = match app
        .store
        .list_consents(&d.name, Some(&s.user_id), None, 500, 0)
        .await
    {
        Ok((c, _)) => c,
        Err(e) => return error_page(&e.into()),
    };
    let sessions = match app.store.user_sessions(&d.name, &s.user_id, now, false).await {
        Ok(v) => v,
        Err(e) => return error_page(&e.into()),
    };
    let consents = consents
        .into_iter()
        .map(|c| AccountConsent {
            client_name: d
                .client(&c.client_id)
                .map_or_else(|| c.client_id.clone(), |x| x.name.clone()),
            when: date(c.updated_at),
            scopes: c
                .scope
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(|name| ConsentScope {
                    name: name.to_string(),
                    description: scope_description(d, name),
                    required: false,
                })
                .collect(),
            client_id: c.client_id,
        })
        .collect();
    let sessions = sessions
        .into_iter()
        .map(|x| AccountSession {
            current: x.sid == s.sid,
            device: describe_user_agent(x.user_agent.as_deref()),
            signed_in: date(x.auth_time),
            last_seen: date(x.last_seen),
        })
        .collect();
    let (csrf, set) = csrf_token(d, headers);
    let action = d.url(paths::ACCOUNT);
    let view = AccountPage {
        action: &action,
        csrf: &csrf,
        username: &username,
        notice,
        consents,
        sessions,
    };
    with_cookie(page(StatusCode::OK, view.render(), None), set)
}

/// A unix time as `YYYY-MM-DD HH:MM UTC`.
fn date(unix: i64) -> String {
    match cookie::time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => unix.to_string(),
    }
}

/// "Firefox on Windows", "Chrome on Android", ... from a User-Agent; the first known name wins.
fn describe_user_agent(ua: Option<&str>) -> String {
    let Some(ua) = ua.filter(|u| !u.is_empty()) else {
        return "An unknown browser".into();
    };
    let browsers = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ];
    let systems = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    let browser = browsers
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map_or("A browser", |(_, name)| name);
    match systems.iter().find(|(needle, _)| ua.contains(needle)) {
        Some((_, os)) => format!("{browser} on {os}"),
        None => browser.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::describe_user_agent;

    #[test]
    fn user_agents_are_named() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; rv:130.0) Gecko/20100101 Firefox/130.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile Safari/604.1",
                "Safari on iOS",
            ),
            ("curl/8.5.0", "curl"),
        ];
        for (ua, want) in cases {
            assert_eq!(describe_user_agent(Some(ua)), want, "{ua}");
        }
        assert_eq!(describe_user_agent(None), "An unknown browser");
    }
}
