//! `ostiary seed`: load-test rows written straight into the store must be rows the server lives
//! with: live where they should be, collected when expired, linked to their users, and unusable
//! as tokens (no plaintext exists for their hashes).

use std::process::Command;

use ostiary::clock::Clock;
use sqlx::Connection;

use crate::flow::{Browser, refresh, sign_in_tokens};
use crate::harness::{Opts, TestApp};

fn ostiary(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.0
}

async fn one_text(app: &TestApp, sql: &str) -> String {
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let row: (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.0
}

#[tokio::test]
async fn seeded_rows_are_live_collected_when_expired_and_unusable_as_tokens() {
    sqlx::any::install_default_drivers();
    let app = TestApp::spawn_with(Opts {
        server_extra: "gc_interval = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let config = app.write_config();
    let (code, _, err) = ostiary(&["seed", "--domain", "default", "--count", "0"], &config);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = ostiary(
        &[
            "seed", "--domain", "default", "--count", "5", "--client", "nobody",
        ],
        &config,
    );
    assert_eq!((code, err.contains("no client")), (1, true), "{err}");

    // 120 users, every tenth expired (the default 10%), for a client with session-bound refresh
    // tokens: 8 rows each.
    let (code, out, err) = ostiary(
        &[
            "seed",
            "--domain",
            "default",
            "--count",
            "120",
            "--client",
            "firstparty",
        ],
        &config,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("seeded 120 users (960 rows)"), "{out}");
    let now = app.clock.now();
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM users WHERE username LIKE 'seed-%'").await,
        120
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM consents WHERE client_id = 'firstparty'"
        )
        .await,
        120
    );
    // Live as the server judges them: sessions within their absolute and idle limits, families
    // and tokens unexpired, each session bound to an existing user.
    let live = format!(
        "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id AND u.domain = s.domain \
         WHERE s.ended_at IS NULL AND s.expires_at > {now} AND s.last_seen + s.idle_timeout > {now}"
    );
    assert_eq!(count(&app, &live).await, 108);
    let live_tokens = format!(
        "SELECT COUNT(*) FROM tokens t JOIN refresh_families f ON f.id = t.family_id \
         JOIN sessions s ON s.sid = f.sid AND s.domain = f.domain \
         WHERE t.kind = 'refresh' AND t.expires_at > {now} AND f.expires_at > {now} AND s.expires_at > {now}"
    );
    assert_eq!(
        count(&app, &live_tokens).await,
        216,
        "a current and a rotated token per live family"
    );
    let current = format!("SELECT COUNT(*) FROM tokens WHERE used_at IS NULL AND expires_at > {now}");
    assert_eq!(count(&app, &current).await, 108);

    // The garbage collector takes the expired tenth and leaves the rest.
    let mut left = (0, 0, 0, 0);
    for _ in 0..100 {
        left = (
            count(&app, "SELECT COUNT(*) FROM sessions").await,
            count(&app, "SELECT COUNT(*) FROM refresh_families").await,
            count(&app, "SELECT COUNT(*) FROM tokens").await,
            count(&app, "SELECT COUNT(*) FROM session_clients").await,
        );
        if left == (108, 108, 216, 108) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, (108, 108, 216, 108));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM family_jtis").await, 108);

    // A seeded refresh token's stored hash is no token: presented, it is refused.
    let hash = one_text(
        &app,
        "SELECT hash FROM tokens WHERE kind = 'refresh' AND used_at IS NULL ORDER BY hash LIMIT 1",
    )
    .await;
    let (status, body) = refresh(&app, "firstparty", &hash, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let intro = app
        .post_basic("/oauth2/v1/introspect", "firstparty", &[("token", &hash)])
        .await;
    let intro: serde_json::Value = intro.json().await.unwrap();
    assert_eq!(intro["active"], false, "{intro}");

    // Disabling a seeded user ends its session and revokes its family: the rows are linked.
    let username = one_text(
        &app,
        &format!(
            "SELECT u.username FROM users u JOIN sessions s ON s.user_id = u.id \
             WHERE s.expires_at > {now} ORDER BY u.username LIMIT 1"
        ),
    )
    .await;
    let (code, _, err) = ostiary(&["user", "disable", "--domain", "default", &username], &config);
    assert_eq!(code, 0, "{err}");
    let user_sql = format!("(SELECT id FROM users WHERE username = '{username}')");
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM sessions WHERE ended_at IS NOT NULL AND user_id = {user_sql}")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL AND sub = {user_sql}")
        )
        .await,
        2
    );

    // The server still serves a sign-in and a session-bound refresh.
    let body = sign_in_tokens(&app, &Browser::new(), "firstparty", "openid orders.read").await;
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    let (status, body) = refresh(&app, "firstparty", &rt, &[]).await;
    assert_eq!(status, 200, "{body}");
}
