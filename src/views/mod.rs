//! askama views: one struct per page. Every value is HTML-escaped by askama.

use askama::Template;

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub action: &'a str,
    pub client_name: &'a str,
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

/// One line of the consent page.
pub struct ConsentScope {
    pub name: String,
    pub description: String,
    /// Shown without a checkbox (`openid`).
    pub required: bool,
}

/// The consent page.
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub action: &'a str,
    pub client_name: &'a str,
    pub username: &'a str,
    pub request_id: &'a str,
    pub csrf: &'a str,
    /// The `sid` of the session the page is shown for: the form is refused for another.
    pub session: &'a str,
    /// Why the page is shown again (the browser signed in anew since it was first shown).
    pub notice: Option<&'a str>,
    pub scopes: Vec<ConsentScope>,
}

/// An error shown to the person (never redirected).
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub message: &'a str,
}

/// The OAuth 2.0 Form Post Response Mode page.
#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage<'a> {
    pub action: &'a str,
    pub fields: Vec<(&'a str, &'a str)>,
    /// What Continue does, for a browser without scripts.
    pub prompt: &'a str,
}

/// The inline script of the form_post page (and of the logout relay), for its CSP hash.
pub const FORM_POST_SCRIPT: &str = "document.forms[0].submit();";

/// What the device page asks the person to confirm.
pub struct DeviceConfirm<'a> {
    pub request_id: &'a str,
    pub client_name: &'a str,
    pub username: &'a str,
    /// The `sid` of the session the page is shown for: the form is refused for another.
    pub session: &'a str,
    /// Why the page is shown again (the browser signed in anew since it was first shown).
    pub notice: Option<&'a str>,
    /// The user code the person typed, to compare with the device's.
    pub user_code: Option<&'a str>,
    pub scopes: Vec<ConsentScope>,
}

/// The device verification page: the user code form, or the confirmation of a device's request.
#[derive(Template)]
#[template(path = "device.html")]
pub struct DevicePage<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    /// The code to show in the field (pre-filled or as typed).
    pub user_code: &'a str,
    pub error: Option<&'a str>,
    /// Set once a code is found and the person is signed in.
    pub confirm: Option<DeviceConfirm<'a>>,
}

/// The device verification page once the person has decided.
#[derive(Template)]
#[template(path = "device_done.html")]
pub struct DeviceDonePage<'a> {
    pub client_name: &'a str,
    pub approved: bool,
}

/// The end-session pages: the confirmation (`confirm`), or the signed-out page with the
/// front-channel logout iframes and the way back to the client.
#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub confirm: bool,
    pub action: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub client_name: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    /// False when the person chose to stay signed in.
    pub signed_out: bool,
    /// Front-channel logout URIs, loaded in hidden iframes.
    pub frames: Vec<String>,
    /// Where to go next (meta refresh and a link).
    pub redirect: Option<&'a str>,
    /// Why the confirmation asks without the application's parameters.
    pub notice: Option<&'a str>,
}

/// One consent on the account page.
pub struct AccountConsent {
    pub client_id: String,
    pub client_name: String,
    pub when: String,
    pub scopes: Vec<ConsentScope>,
}

/// One live session on the account page.
pub struct AccountSession {
    pub current: bool,
    /// Browser and system, from the User-Agent at sign-in ("Chrome on Linux").
    pub device: String,
    pub signed_in: String,
    pub last_seen: String,
}

/// The account page: consents and sessions, with their actions.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub notice: Option<&'a str>,
    pub consents: Vec<AccountConsent>,
    pub sessions: Vec<AccountSession>,
}
