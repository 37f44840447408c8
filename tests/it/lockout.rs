//! Sign-in throttling: per account and per client address, the same for unknown names, with a
//! lockout that backs off, and the same message for an unknown user and a wrong password.

use crate::flow::{Browser, Page, code_request_url, pkce};
use crate::harness::{TestApp, password};

async fn login_page(app: &TestApp, browser: &Browser) -> Page {
    let p = pkce();
    let page = browser
        .get(&code_request_url(
            app,
            "webapp",
            "openid",
            &p.challenge,
            &[("state", "s")],
        ))
        .await;
    assert_eq!(page.status, 200);
    page
}

const WRONG: &str = "The username or password is incorrect.";

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let login = login_page(&app, &browser).await;
    let wrong = browser.sign_in(&login, "alice", "nope").await;
    let unknown = browser.sign_in(&login, "nobody", "nope").await;
    let disabled = browser.sign_in(&login, "bob", &password("bob")).await;
    for page in [&wrong, &unknown, &disabled] {
        assert_eq!(page.status, 401);
        assert!(page.body.contains(WRONG), "{}", page.body);
        assert!(page.location().is_none());
    }
    // The page is the same but for the username echoed back in the field.
    assert_eq!(
        wrong.body.replace("value=\"alice\"", ""),
        unknown.body.replace("value=\"nobody\"", "")
    );
}

#[tokio::test]
async fn an_account_locks_after_repeated_failures_and_the_lock_backs_off() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let login = login_page(&app, &browser).await;
    for _ in 0..5 {
        assert_eq!(browser.sign_in(&login, "alice", "wrong").await.status, 401);
    }
    // Locked: even the right password is refused, without checking it.
    let locked = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(locked.status, 429);
    assert!(
        locked.body.contains("Too many failed sign-ins"),
        "{}",
        locked.body
    );
    let retry: i64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // Another account is not affected.
    let other = browser.sign_in(&login, "carol", "wrong").await;
    assert_eq!(other.status, 401);
    // After 30 s one more failure locks for twice as long.
    app.clock.advance(31);
    assert_eq!(browser.sign_in(&login, "alice", "wrong").await.status, 401);
    let again = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(again.status, 429);
    let retry: i64 = again.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((31..=60).contains(&retry), "doubled: {retry}");
    app.clock.advance(61);
    let ok = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
}

#[tokio::test]
async fn unknown_usernames_lock_like_real_ones() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let login = login_page(&app, &browser).await;
    for _ in 0..5 {
        assert_eq!(browser.sign_in(&login, "ghost", "x").await.status, 401);
    }
    let page = browser.sign_in(&login, "ghost", "x").await;
    assert_eq!(page.status, 429, "no hint that the account does not exist");
}

#[tokio::test]
async fn an_address_locks_after_failures_across_many_accounts() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let login = login_page(&app, &browser).await;
    for i in 0..20 {
        let status = browser.sign_in(&login, &format!("user{i}"), "x").await.status;
        assert_eq!(status, 401, "attempt {i}");
    }
    let page = browser.sign_in(&login, "carol", &password("carol")).await;
    assert_eq!(page.status, 429, "{}", page.body);
}

#[tokio::test]
async fn a_successful_sign_in_forgets_the_accounts_failures() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    // Four failures (the fifth would lock), a success, and four more: not locked.
    let login = login_page(&app, &browser).await;
    for _ in 0..4 {
        assert_eq!(browser.sign_in(&login, "alice", "wrong").await.status, 401);
    }
    let ok = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let fresh = Browser::new();
    let login = login_page(&app, &fresh).await;
    for _ in 0..4 {
        assert_eq!(fresh.sign_in(&login, "alice", "wrong").await.status, 401);
    }
    let ok = fresh.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(ok.status, 303, "the earlier four were forgotten: {}", ok.body);
    // (Eight failures without the success would have locked the account at the fifth: see above.)
}

/// Guesses sent at once all read the counts before any is counted (argon2 takes 20 ms each, two
/// at a time): without the gate every one of them would be checked. The budget's worth is checked
/// and counted; the others are refused as locked, without argon2.
#[tokio::test]
async fn guesses_sent_at_once_do_not_overshoot_the_budget() {
    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let login = login_page(&app, &browser).await;
    let guesses = (0..16).map(|_| browser.sign_in(&login, "alice", "wrong"));
    let pages = futures_util::future::join_all(guesses).await;
    let statuses: Vec<u16> = pages.iter().map(|p| p.status).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (5, 11), "{statuses:?}");
    let rows = crate::harness::rows_text(&app.database_url, "login_attempts", "bucket, failures").await;
    assert!(rows.lines().any(|r| r == "u:alice 5"), "{rows}");
    // The right password is refused too, while the lock lasts.
    let page = browser.sign_in(&login, "alice", &password("alice")).await;
    assert_eq!(page.status, 429, "{}", page.body);
}

/// The password check's one read: the user (or none) and each bucket's count and lock end in the
/// order asked (none: no failures on record); failures older than a day count as none. A swapped
/// column would lock or forget the wrong bucket.
#[tokio::test]
async fn one_read_gives_the_user_and_each_buckets_lock_in_order() {
    use ostiary::clock::Clock;
    use ostiary::store::SqlStore;
    use ostiary::store::signin::{SignInStore, Tally};

    let app = TestApp::spawn().await;
    let store = SqlStore::connect(&app.database_url, 1).await.unwrap();
    let t = |failures, locked_until| {
        Some(Tally {
            failures,
            locked_until,
        })
    };
    let now = app.clock.now();
    // Threshold 1: the address is locked for 30 s at once; the account has a failure, no lock.
    store
        .record_login_failure("default", "a:192.0.2.1", now, 1, 30, 60)
        .await
        .unwrap();
    store
        .record_login_failure("default", "u:alice", now, 5, 30, 60)
        .await
        .unwrap();

    let (user, locks) = store
        .find_user_and_locks("default", "alice", ["u:alice", "a:192.0.2.1"], now)
        .await
        .unwrap();
    assert_eq!(user.map(|u| u.username).as_deref(), Some("alice"));
    assert_eq!(locks, [t(1, 0), t(1, now + 30)]);
    let (_, swapped) = store
        .find_user_and_locks("default", "alice", ["a:192.0.2.1", "u:alice"], now)
        .await
        .unwrap();
    assert_eq!(swapped, [t(1, now + 30), t(1, 0)]);
    // A day later the failures no longer count; the (past) lock end is still read.
    let (_, later) = store
        .find_user_and_locks("default", "alice", ["u:alice", "a:192.0.2.1"], now + 86_401)
        .await
        .unwrap();
    assert_eq!(later, [t(0, 0), t(0, now + 30)]);

    // An unknown user, buckets without failures: one row all the same, of NULLs.
    let (user, locks) = store
        .find_user_and_locks("default", "ghost", ["u:ghost", "a:192.0.2.2"], now)
        .await
        .unwrap();
    assert!(user.is_none());
    assert_eq!(locks, [None, None]);
    // Another domain's user is not found.
    let (user, _) = store
        .find_user_and_locks("tenant2", "alice", ["u:alice", "a:192.0.2.1"], now)
        .await
        .unwrap();
    assert!(user.is_none());
}
