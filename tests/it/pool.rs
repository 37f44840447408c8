//! The store's connection pool: a connection is reused only in a state known to be idle. A
//! statement cancelled mid-way (its request dropped) or a lease dropped without release must not
//! hand its connection to the next statement; a statement the database rejected must.
//!
//! A TEMP table exists only on the connection that created it: it tells which connection ran.
//! Token and code inserts, committed in groups by one writer task each, all land.

use std::time::Duration;

use ostiary::store::pool::{Limits, Pool};

use crate::harness::{fresh_database, on_postgres};

async fn one_connection_pool(wait: Duration) -> (Pool, tempfile::TempDir) {
    pool_with(1, wait, Limits::default()).await
}

async fn pool_with(max: usize, wait: Duration, limits: Limits) -> (Pool, tempfile::TempDir) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let mut url = fresh_database(dir.path()).await;
    if !on_postgres() {
        url.push_str("?mode=rwc");
    }
    let pool = Pool::connect_with(&url, &[], max, wait, limits).await.unwrap();
    (pool, dir)
}

async fn marker_visible(pool: &Pool) -> bool {
    sqlx::query("SELECT x FROM marker").fetch_all(pool).await.is_ok()
}

/// A statement that runs for seconds on either database.
fn slow_statement() -> &'static str {
    if on_postgres() {
        "SELECT pg_sleep(3)"
    } else {
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 20000000) \
         SELECT COUNT(*) FROM c"
    }
}

#[tokio::test]
async fn a_cancelled_statement_does_not_hand_its_connection_on() {
    let (pool, _dir) = one_connection_pool(Duration::from_secs(5)).await;
    sqlx::query("CREATE TEMP TABLE marker (x INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        marker_visible(&pool).await,
        "one connection: the next statement runs on it"
    );

    // Rejected by the database: the connection is idle again and stays in the pool.
    let err = sqlx::query("SELECT no_such_column FROM marker")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(matches!(err, sqlx::Error::Database(_)), "{err:?}");
    assert!(
        marker_visible(&pool).await,
        "a database error keeps the connection"
    );

    // Cancelled mid-statement: that connection is closed, the next statement gets a new one.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query(slow_statement()).fetch_all(&pool),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the slow statement was cancelled, not finished"
    );
    assert!(
        !marker_visible(&pool).await,
        "the cancelled connection was not reused"
    );
    assert_eq!(pool.size(), 1, "its slot went to the new connection");
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
}

#[tokio::test]
async fn a_lease_is_reused_only_when_released() {
    let (pool, _dir) = one_connection_pool(Duration::from_secs(5)).await;
    let mut lease = pool.acquire().await.unwrap();
    sqlx::query("CREATE TEMP TABLE marker (x INTEGER)")
        .execute(&mut *lease)
        .await
        .unwrap();
    lease.release();
    assert!(marker_visible(&pool).await);

    let lease = pool.acquire().await.unwrap();
    drop(lease); // as on an error half-way through a transaction
    assert!(
        !marker_visible(&pool).await,
        "a lease dropped unreleased is closed"
    );
}

#[tokio::test]
async fn waiting_longer_than_the_pool_allows_is_a_pool_timeout() {
    let (pool, _dir) = one_connection_pool(Duration::from_millis(200)).await;
    let held = pool.acquire().await.unwrap();
    let err = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    held.release();
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
}

async fn limited_pool(max: usize, limits: Limits) -> (Pool, tempfile::TempDir) {
    pool_with(max, Duration::from_secs(5), limits).await
}

#[tokio::test]
async fn a_connection_past_its_lifetime_is_replaced_when_next_taken() {
    let lifetime = Duration::from_secs(1);
    let (pool, _dir) = limited_pool(
        1,
        Limits {
            max_lifetime: Some(lifetime),
            ..Limits::default()
        },
    )
    .await;
    sqlx::query("CREATE TEMP TABLE marker (x INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        marker_visible(&pool).await,
        "within its lifetime the connection is reused"
    );
    tokio::time::sleep(lifetime + Duration::from_millis(200)).await;
    assert!(
        !marker_visible(&pool).await,
        "past its lifetime the statement ran on a new connection"
    );
    assert_eq!(pool.size(), 1, "the old connection's slot went to the new one");
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
}

#[tokio::test]
async fn idle_connections_past_the_idle_timeout_are_closed_without_traffic() {
    let idle = Duration::from_secs(1);
    let (pool, _dir) = limited_pool(
        2,
        Limits {
            idle_timeout: Some(idle),
            ..Limits::default()
        },
    )
    .await;
    // Pool::connect_with opened one connection; a second statement held alongside opens another.
    let held = pool.acquire().await.unwrap();
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    held.release();
    assert_eq!(pool.size(), 2);
    assert_eq!(pool.close_expired().await, 0, "both were just used");
    assert_eq!(pool.size(), 2);

    tokio::time::sleep(idle + Duration::from_millis(200)).await;
    assert_eq!(pool.close_expired().await, 2, "both sat idle past the timeout");
    assert_eq!(pool.size(), 0);
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    assert_eq!(pool.size(), 1, "the next statement opens a connection again");
}

#[tokio::test]
async fn a_pool_without_limits_keeps_its_connections() {
    let (pool, _dir) = one_connection_pool(Duration::from_secs(5)).await;
    sqlx::query("CREATE TEMP TABLE marker (x INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(pool.close_expired().await, 0);
    assert!(marker_visible(&pool).await);
}

/// `Pool::taken` returns once a connection was taken, or the pool closed, since it last returned;
/// not otherwise (SQLite's checkpointer waits on the writer's pool with it).
#[tokio::test]
async fn taken_returns_after_a_use_or_the_close_only() {
    let quiet = Duration::from_millis(100);
    let (pool, _dir) = one_connection_pool(Duration::from_secs(5)).await;
    tokio::time::timeout(quiet, pool.taken())
        .await
        .expect("connecting took a connection");
    assert!(
        tokio::time::timeout(quiet, pool.taken()).await.is_err(),
        "nothing was taken since"
    );
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    tokio::time::timeout(quiet, pool.taken())
        .await
        .expect("the statement took a connection");
    assert!(tokio::time::timeout(quiet, pool.taken()).await.is_err());
    pool.close().await;
    tokio::time::timeout(quiet, pool.taken())
        .await
        .expect("closing wakes a waiter");
}

/// Token inserts are committed in groups: 200 at once all land, each exactly as given, including
/// the groups of more than 32 rows (several statements in one transaction).
#[tokio::test]
async fn concurrent_token_inserts_are_all_stored() {
    use ostiary::store::{TokenRow, TokenStore};

    let (store, _dir) = migrated_store().await;
    let row = |i: usize| TokenRow {
        hash: format!("hash-{i}"),
        domain: "default".into(),
        kind: "access".into(),
        client_id: "c".into(),
        sub: format!("user-{i}"),
        scope: "openid".into(),
        aud: "[]".into(),
        claims: "{}".into(),
        jti: format!("jti-{i}"),
        issued_at: 1_000 + i as i64,
        expires_at: 2_000 + i as i64,
        revoked_at: None,
        family_id: None,
        used_at: None,
    };
    let inserts: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_token(&row(i)).await })
        })
        .collect();
    for insert in inserts {
        insert.await.unwrap().unwrap();
    }
    for i in 0..200 {
        let found = store
            .find_token("default", &format!("hash-{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.sub, found.jti, found.issued_at, found.expires_at),
            (
                format!("user-{i}"),
                format!("jti-{i}"),
                1_000 + i as i64,
                2_000 + i as i64
            )
        );
    }
    // Inserting an existing hash again leaves the stored row as it was.
    let mut again = row(7);
    again.sub = "someone-else".into();
    store.insert_token(&again).await.unwrap();
    assert_eq!(
        store.find_token("default", "hash-7").await.unwrap().unwrap().sub,
        "user-7"
    );
}

/// A migrated store on a fresh database (its temp dir kept alive by the caller).
async fn migrated_store() -> (ostiary::store::SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = ostiary::store::SqlStore::connect(&fresh_database(dir.path()).await, 4)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// A live refresh-token family `id` of the default domain, for the store tests below.
fn family(id: &str) -> ostiary::store::refresh::FamilyRow {
    ostiary::store::refresh::FamilyRow {
        id: id.to_string(),
        domain: "default".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        scope: "openid".into(),
        sid: String::new(),
        offline: 0,
        auth_time: 1_000,
        amr: "[]".into(),
        claims: None,
        created_at: 1_000,
        expires_at: 9_000,
        revoked_at: None,
    }
}

/// Access token ids recorded in their refresh-token families are committed in groups too: 150 at
/// once over three families all land in their own family (revoking a family names exactly its
/// ids), and recording an id again changes nothing.
#[tokio::test]
async fn concurrent_family_access_token_ids_are_all_stored_in_their_family() {
    use ostiary::store::refresh::RefreshStore;

    let (store, _dir) = migrated_store().await;
    for f in 0..3 {
        store
            .insert_family(&family(&format!("family-{f}")))
            .await
            .unwrap();
    }
    let adds: Vec<_> = (0..150)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .add_family_jti(
                        "default",
                        &format!("family-{}", i % 3),
                        &format!("jti-{i}"),
                        5_000,
                    )
                    .await
            })
        })
        .collect();
    for add in adds {
        add.await.unwrap().unwrap();
    }
    // Again, into another family: the id stays where it was.
    store
        .add_family_jti("default", "family-1", "jti-0", 5_000)
        .await
        .unwrap();
    for f in 0..3 {
        let mut jtis = store
            .revoke_family("default", &format!("family-{f}"), 2_000)
            .await
            .unwrap();
        jtis.sort();
        let mut expected: Vec<String> = (0..150)
            .filter(|i| i % 3 == f)
            .map(|i| format!("jti-{i}"))
            .collect();
        expected.sort();
        assert_eq!(jtis, expected, "family-{f}");
    }
}

/// Successors of rotated refresh tokens are committed in groups too: 120 at once over four
/// families, one of them revoked. Each row of a live family is stored with every column as given
/// (true); a revoked family's are not (false); a hash already stored is not stored again (false).
#[tokio::test]
async fn concurrent_successors_are_stored_only_in_live_families() {
    use ostiary::store::refresh::RefreshStore;
    use ostiary::store::{TokenRow, TokenStore};

    let (store, _dir) = migrated_store().await;
    for f in 0..4 {
        store
            .insert_family(&family(&format!("family-{f}")))
            .await
            .unwrap();
    }
    store.revoke_family("default", "family-3", 1_500).await.unwrap();
    let row = |i: usize| TokenRow {
        hash: format!("succ-{i}"),
        domain: "default".into(),
        kind: "refresh".into(),
        client_id: "c".into(),
        sub: format!("user-{i}"),
        scope: "openid offline_access".into(),
        aud: "[]".into(),
        claims: format!("{{\"n\":{i}}}"),
        jti: format!("jti-{i}"),
        issued_at: 1_000 + i as i64,
        expires_at: 5_000 + i as i64,
        revoked_at: None,
        family_id: Some(format!("family-{}", i % 4)),
        used_at: None,
    };
    let inserts: Vec<_> = (0..120)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_successor(&row(i)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for insert in inserts {
        answers.push(insert.await.unwrap().unwrap());
    }
    for (i, stored) in answers.into_iter().enumerate() {
        let found = store.find_token("default", &format!("succ-{i}")).await.unwrap();
        if i % 4 == 3 {
            assert!(!stored && found.is_none(), "succ-{i}: its family is revoked");
            continue;
        }
        assert!(stored, "succ-{i}");
        let t = found.unwrap();
        assert_eq!(
            (
                t.kind.as_str(),
                t.sub,
                t.scope.as_str(),
                t.claims,
                t.jti,
                t.issued_at,
                t.expires_at
            ),
            (
                "refresh",
                format!("user-{i}"),
                "openid offline_access",
                format!("{{\"n\":{i}}}"),
                format!("jti-{i}"),
                1_000 + i as i64,
                5_000 + i as i64
            )
        );
        assert_eq!(
            (t.family_id, t.revoked_at, t.used_at),
            (Some(format!("family-{}", i % 4)), None, None)
        );
    }
    // A family that does not exist, and one of another domain: nothing stored.
    let mut orphan = row(200);
    orphan.family_id = Some("no-such-family".into());
    let mut elsewhere = row(201);
    elsewhere.domain = "other".into();
    for (what, r) in [("no family", orphan), ("another domain's family", elsewhere)] {
        assert!(!store.insert_successor(&r).await.unwrap(), "{what}");
        assert!(
            store.find_token(&r.domain, &r.hash).await.unwrap().is_none(),
            "{what}"
        );
    }
    // A hash already stored: not stored again, and the stored row stays as it was.
    let mut again = row(0);
    again.sub = "someone-else".into();
    assert!(!store.insert_successor(&again).await.unwrap());
    assert_eq!(
        store.find_token("default", "succ-0").await.unwrap().unwrap().sub,
        "user-0"
    );
}

/// Authorization codes are committed in groups too: 200 at once all land with every column as
/// given (the 22 binds in their columns' order), and a code's hash is never stored twice.
#[tokio::test]
async fn concurrent_code_inserts_are_all_stored_with_every_column() {
    use ostiary::store::signin::{CodeRow, SignInStore};

    let (store, _dir) = migrated_store().await;
    let row = |i: usize| {
        let n = i as i64;
        CodeRow {
            hash: format!("code-{i}"),
            domain: "default".into(),
            client_id: format!("client-{i}"),
            user_id: format!("user-{i}"),
            redirect_uri: format!("https://rp.example/{i}"),
            redirect_uri_given: (i % 2) as i64,
            scope: format!("openid s{i}"),
            nonce: Some(format!("nonce-{i}")),
            code_challenge: Some(format!("challenge-{i}")),
            code_challenge_method: Some("S256".into()),
            sid: format!("sid-{i}"),
            auth_time: 1_000 + n,
            amr: format!("[\"pwd{i}\"]"),
            session_expires_at: 2_000 + n,
            issued_at: 3_000 + n,
            expires_at: 4_000 + n,
            used_at: Some(5_000 + n),
            access_jti: Some(format!("jti-{i}")),
            access_expires_at: Some(6_000 + n),
            family_id: Some(format!("family-{i}")),
            claims: Some(format!("{{\"n\":{i}}}")),
            reused_at: Some(7_000 + n),
        }
    };
    let inserts: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_code(&row(i)).await })
        })
        .collect();
    for insert in inserts {
        insert.await.unwrap().unwrap();
    }
    for i in 0..200 {
        let found = store
            .find_code("default", &format!("code-{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(format!("{found:?}"), format!("{:?}", row(i)));
    }
    let mut again = row(7);
    again.user_id = "someone-else".into();
    assert!(store.insert_code(&again).await.is_err(), "a hash stored twice");
    let found = store.find_code("default", "code-7").await.unwrap().unwrap();
    assert_eq!(found.user_id, "user-7");
}

/// PostgreSQL dropping every connection (a restart, a failover): each pooled connection fails its
/// next statement once (503, never 500), is closed, and the server goes on without a restart.
#[tokio::test]
async fn the_server_recovers_when_postgres_drops_every_connection() {
    use sqlx::{Connection, Executor};

    use crate::harness::TestApp;

    if !on_postgres() {
        eprintln!("note: the connection-loss test runs on PostgreSQL only");
        return;
    }
    let app = TestApp::spawn().await;
    let opaque_token = || async {
        app.post_basic(
            "/oauth2/v1/token",
            "opaque",
            &[("grant_type", "client_credentials")],
        )
        .await
        .status()
        .as_u16()
    };
    let warm = futures_util::future::join_all((0..8).map(|_| opaque_token())).await;
    assert!(warm.iter().all(|s| *s == 200), "{warm:?}");

    let mut admin = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let killed = admin
        .fetch_all(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    assert!(!killed.is_empty(), "the server had connections open");

    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(opaque_token().await);
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    // At most one failure per pooled connection (max_connections = 5 in the test config).
    assert!(
        statuses.iter().filter(|s| **s == 503).count() <= 5,
        "{statuses:?}"
    );
    assert!(statuses[6..].iter().all(|s| *s == 200), "recovered: {statuses:?}");
    let token = app.token("opaque", &[]).await;
    let active = app
        .introspect("opaque", token["access_token"].as_str().unwrap())
        .await;
    assert_eq!(active["active"], true);
}

/// Assertion ids are recorded in groups too: under concurrency each id is taken exactly once,
/// a replay is refused, and an id whose assertion expired can be used again.
#[tokio::test]
async fn concurrent_assertion_ids_are_each_taken_once() {
    use ostiary::store::assertion::AssertionStore;

    let (store, _dir) = migrated_store().await;
    let use_all = |ids: Vec<String>, now: i64| {
        let store = store.clone();
        async move {
            let tasks: Vec<_> = ids
                .into_iter()
                .map(|id| {
                    let store = store.clone();
                    tokio::spawn(
                        async move { store.use_assertion_jti("default", "iss", &id, 2_000, now).await },
                    )
                })
                .collect();
            let mut taken = Vec::new();
            for t in tasks {
                taken.push(t.await.unwrap().unwrap());
            }
            taken
        }
    };
    let mut ids: Vec<String> = (0..100).map(|i| format!("id-{i}")).collect();
    ids.extend((0..20).map(|_| "raced".to_string()));
    let taken = use_all(ids.clone(), 1_000).await;
    assert!(taken[..100].iter().all(|t| *t), "every distinct id is new");
    assert_eq!(
        taken[100..].iter().filter(|t| **t).count(),
        1,
        "the raced id is taken once"
    );

    let again = use_all(ids.clone(), 1_500).await;
    assert!(
        again.iter().all(|t| !*t),
        "every id is a replay before its expiry"
    );

    let after_expiry = use_all(vec!["id-7".into(), "id-7".into(), "raced".into()], 2_001).await;
    assert_eq!(after_expiry.iter().filter(|t| **t).count(), 2, "{after_expiry:?}");
    assert!(after_expiry[2], "an expired id is taken over");
}

/// A store-managed user `id` of `domain` with `status`, for the lookup tests below.
fn user(id: &str, domain: &str, status: &str) -> ostiary::store::UserRow {
    ostiary::store::UserRow {
        id: id.into(),
        domain: domain.into(),
        username: format!("{id}-name"),
        password_hash: None,
        status: status.into(),
        claims: "{}".into(),
        source: "store".into(),
        config_hash: None,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

/// JWT states are read in groups (one statement for the lookups of one moment): 400 concurrent
/// lookups over two domains each get their own token's revocation and their own subject's status.
#[tokio::test]
async fn concurrent_jwt_states_each_answer_for_their_own_token() {
    use ostiary::store::{DirectoryStore, TokenStore};
    let (store, _dir) = migrated_store().await;
    for u in [
        user("a-on", "default", "active"),
        user("a-off", "default", "disabled"),
        user("b-on", "other", "active"),
        user("b-off", "other", "disabled"),
    ] {
        store.insert_user(&u).await.unwrap();
    }
    for i in 0..10 {
        store
            .revoke_jti("default", &format!("r{i}"), "c", 9_000)
            .await
            .unwrap();
    }
    store.revoke_jti("other", "n0", "c", 9_000).await.unwrap();
    let mut lookups = Vec::new();
    for domain in ["default", "other"] {
        for i in 0..10 {
            for jti in [format!("r{i}"), format!("n{i}")] {
                for sub in ["a-on", "a-off", "b-on", "b-off", "nobody"] {
                    for _ in 0..2 {
                        lookups.push((domain, jti.clone(), sub));
                    }
                }
            }
        }
    }
    let answers = futures_util::future::join_all(
        lookups
            .iter()
            .map(|(domain, jti, sub)| store.jwt_state(domain, jti, sub)),
    )
    .await;
    for ((domain, jti, sub), answer) in lookups.iter().zip(answers) {
        let state = answer.unwrap();
        let revoked = if *domain == "default" {
            jti.starts_with('r')
        } else {
            jti == "n0"
        };
        // Only a user of the token's own domain counts.
        let disabled = matches!((*domain, *sub), ("default", "a-off") | ("other", "b-off"));
        assert_eq!(
            (state.revoked, state.user_disabled),
            (revoked, disabled),
            "{domain} {jti} {sub}"
        );
    }
}

/// Opaque tokens are read in groups too: concurrent lookups of stored and unknown hashes, in the
/// token's domain and in another, each get their own row (or none) and their own user's status.
#[tokio::test]
async fn concurrent_token_lookups_each_answer_for_their_own_token() {
    use ostiary::store::{DirectoryStore, TokenRow, TokenStore};
    let (store, _dir) = migrated_store().await;
    for (id, status) in [("on", "active"), ("off", "disabled")] {
        store.insert_user(&user(id, "default", status)).await.unwrap();
    }
    // Token i is for the disabled user when i is odd; every third one names no user at all.
    let sub = |i: i64| match (i % 3, i % 2) {
        (0, _) => "client".to_string(),
        (_, 1) => "off".to_string(),
        _ => "on".to_string(),
    };
    for i in 0..40 {
        store
            .insert_token(&TokenRow {
                hash: format!("h{i}"),
                domain: "default".into(),
                kind: "access".into(),
                client_id: "c".into(),
                sub: sub(i),
                scope: "s".into(),
                aud: "[]".into(),
                claims: "{}".into(),
                jti: format!("j{i}"),
                issued_at: 1_000 + i,
                expires_at: 2_000,
                revoked_at: None,
                family_id: None,
                used_at: None,
            })
            .await
            .unwrap();
    }
    let mut lookups = Vec::new();
    for _ in 0..3 {
        for i in 0..60 {
            for domain in ["default", "other"] {
                lookups.push((domain, i, format!("h{i}")));
            }
        }
    }
    let answers = futures_util::future::join_all(
        lookups
            .iter()
            .map(|(domain, _, hash)| store.find_token_and_user(domain, hash)),
    )
    .await;
    for ((domain, i, _), answer) in lookups.iter().zip(answers) {
        let found = answer
            .unwrap()
            .map(|(t, disabled)| (t.jti, t.issued_at, disabled));
        let expected =
            (*domain == "default" && *i < 40).then(|| (format!("j{i}"), 1_000 + i, sub(*i) == "off"));
        assert_eq!(found, expected, "{domain} h{i}");
    }
}

/// Rotations use up their refresh tokens in groups: 40 tokens presented three times each at
/// once, by their client and by another, at two different moments. Each usable token goes to
/// exactly one of its client's requests, with the used-up time of that request; a token of
/// another client, one bound to a certificate, one already used or revoked, and an unknown one
/// go to none.
#[tokio::test]
async fn concurrent_refresh_takes_use_each_token_once() {
    use ostiary::store::refresh::RefreshStore;
    use ostiary::store::{TokenRow, TokenStore};

    let (store, _dir) = migrated_store().await;
    store.insert_family(&family("f")).await.unwrap();
    // Token i: bound to a certificate when i % 5 == 1, used when 2, revoked when 3.
    for i in 0..40 {
        store
            .insert_token(&TokenRow {
                hash: format!("r{i}"),
                domain: "default".into(),
                kind: "refresh".into(),
                client_id: "c".into(),
                sub: "u".into(),
                scope: "openid".into(),
                aud: "[]".into(),
                claims: if i % 5 == 1 {
                    r#"{"cnf":{}}"#.into()
                } else {
                    "{}".into()
                },
                jti: format!("j{i}"),
                issued_at: 1_000,
                expires_at: 9_000,
                revoked_at: (i % 5 == 3).then_some(1_500),
                family_id: Some("f".into()),
                used_at: (i % 5 == 2).then_some(1_500),
            })
            .await
            .unwrap();
    }
    let usable = |i: usize| i < 40 && [0, 4].contains(&(i % 5));
    let mut takes = Vec::new();
    // A token's presentations side by side, so that they share a group.
    for i in 0..45 {
        for round in 0..3 {
            for client in ["c", "other"] {
                takes.push((i, client, 2_000 + ((i + round) % 2) as i64, format!("r{i}")));
            }
        }
    }
    let answers = futures_util::future::join_all(
        takes
            .iter()
            .map(|(_, client, now, hash)| store.take_refresh("default", hash, client, *now)),
    )
    .await;
    let mut taken = vec![0; 45];
    for ((i, client, now, _), answer) in takes.iter().zip(answers) {
        if let Some(row) = answer.unwrap() {
            assert!(usable(*i) && *client == "c", "r{i} taken by {client}");
            assert_eq!(
                (row.hash, row.jti, row.used_at),
                (format!("r{i}"), format!("j{i}"), Some(*now))
            );
            taken[*i] += 1;
        }
    }
    for (i, n) in taken.iter().enumerate() {
        assert_eq!(*n, usize::from(usable(i)), "r{i} taken {n} times");
        if i < 40 {
            let used = store
                .find_token("default", &format!("r{i}"))
                .await
                .unwrap()
                .unwrap()
                .used_at;
            assert_eq!(used.is_some(), i % 5 != 1 && i % 5 != 3, "r{i} used_at {used:?}");
        }
    }
}

/// Refresh-token families are read in groups: 240 lookups at once, in two domains, of families
/// whose user is active, disabled or gone, and of unknown ones; each answers with its own family
/// and user.
#[tokio::test]
async fn concurrent_family_lookups_each_answer_for_their_own_family() {
    use ostiary::store::DirectoryStore;
    use ostiary::store::refresh::RefreshStore;

    let (store, _dir) = migrated_store().await;
    for (id, status) in [("on", "active"), ("off", "disabled")] {
        store.insert_user(&user(id, "default", status)).await.unwrap();
    }
    // Family i belongs to "on", "off" or a user who is gone, in turn.
    let owner = |i: usize| ["on", "off", "gone"][i % 3];
    for i in 0..30 {
        let mut f = family(&format!("f{i}"));
        f.user_id = owner(i).into();
        f.scope = format!("scope-{i}");
        f.auth_time = 1_000 + i as i64;
        store.insert_family(&f).await.unwrap();
    }
    let mut lookups = Vec::new();
    for _ in 0..4 {
        for i in 0..30 {
            for domain in ["default", "other"] {
                lookups.push((domain, i, format!("f{i}")));
            }
        }
    }
    lookups.extend((30..60).map(|i| ("default", i, format!("f{i}"))));
    let answers = futures_util::future::join_all(
        lookups
            .iter()
            .map(|(domain, _, id)| store.find_family_with_user(domain, id)),
    )
    .await;
    for ((domain, i, _), answer) in lookups.iter().zip(answers) {
        let found = answer
            .unwrap()
            .map(|(f, u)| (f.id, f.scope, f.auth_time, f.user_id, u.map(|u| (u.id, u.status))));
        let expected = (*domain == "default" && *i < 30).then(|| {
            let status = match owner(*i) {
                "on" => Some(("on".to_string(), "active".to_string())),
                "off" => Some(("off".to_string(), "disabled".to_string())),
                _ => None,
            };
            (
                format!("f{i}"),
                format!("scope-{i}"),
                1_000 + *i as i64,
                owner(*i).to_string(),
                status,
            )
        });
        assert_eq!(found, expected, "{domain} f{i}");
    }
}

/// Replays racing on two replicas (two stores on one database), in many groups at once, each
/// group holding the same ids in a different order: no group fails (on PostgreSQL two groups
/// writing shared ids in opposite orders would deadlock), and each id is taken exactly once.
#[tokio::test]
async fn replayed_assertion_ids_on_two_replicas_are_taken_once_without_failing() {
    use ostiary::store::assertion::AssertionStore;

    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let replicas = [
        ostiary::store::SqlStore::connect(&url, 4).await.unwrap(),
        ostiary::store::SqlStore::connect(&url, 4).await.unwrap(),
    ];
    replicas[0].migrate().await.unwrap();
    let mut uses = Vec::new();
    for round in 0..12 {
        let mut ids: Vec<usize> = (0..40).collect();
        if round % 2 == 1 {
            ids.reverse();
        }
        uses.extend(ids.into_iter().map(|i| (round % 2, format!("id-{i}"))));
    }
    let tasks: Vec<_> = uses
        .iter()
        .map(|(replica, id)| {
            let store = replicas[*replica].clone();
            let id = id.clone();
            tokio::spawn(async move { store.use_assertion_jti("default", "iss", &id, 9_000, 1_000).await })
        })
        .collect();
    let mut taken = std::collections::HashMap::new();
    for ((_, id), task) in uses.iter().zip(tasks) {
        let first = task.await.unwrap().expect("no group fails");
        *taken.entry(id.clone()).or_insert(0) += usize::from(first);
    }
    assert_eq!(taken.len(), 40);
    assert!(taken.values().all(|n| *n == 1), "{taken:?}");
}

/// On SQLite the writing connection never checkpoints: a task of the store copies the log into the
/// database file and makes it start over (`src/store/checkpoint.rs`). Under writes that never
/// pause, when a passive checkpoint alone would let the log grow for as long as they last, it
/// still starts over again and again, and every row lands intact.
#[tokio::test]
async fn the_sqlite_log_starts_over_under_writes_that_never_pause() {
    use std::io::Read;
    use std::sync::Arc;

    use sqlx::Connection;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use ostiary::store::{TokenRow, TokenStore};

    if on_postgres() {
        return;
    }
    let (store, dir) = migrated_store().await;
    let wal = dir.path().join("ostiary.db-wal");
    // The log's header counts the times it started over (its checkpoint sequence number, bytes 12
    // to 16, big-endian), written with the first page after each start.
    let starts = || {
        let mut header = [0u8; 16];
        std::fs::File::open(&wal)
            .and_then(|mut f| f.read_exact(&mut header))
            .map(|()| u32::from_be_bytes([header[12], header[13], header[14], header[15]]))
            .unwrap_or(0)
    };
    let before = starts();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = format!("{w}-{i}");
                    store
                        .insert_token(&TokenRow {
                            hash: format!("hash-{n}"),
                            domain: "default".into(),
                            kind: "access".into(),
                            client_id: "c".into(),
                            sub: "u".into(),
                            scope: "openid".into(),
                            aud: "[]".into(),
                            claims: "{}".into(),
                            jti: format!("jti-{n}"),
                            issued_at: 1_000,
                            expires_at: 9_000,
                            revoked_at: None,
                            family_id: None,
                            used_at: None,
                        })
                        .await
                        .unwrap();
                    written.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                i
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while starts().wrapping_sub(before) < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started_over = starts().wrapping_sub(before);
    stop.store(true, Ordering::Relaxed);
    let mut each = Vec::new();
    for w in writers {
        each.push(w.await.unwrap());
    }
    assert!(
        started_over >= 3,
        "the log started over {started_over} times during {} writes",
        written.load(Ordering::Relaxed)
    );
    let url = format!("sqlite://{}", dir.path().join("ostiary.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count as usize, written.load(Ordering::Relaxed));
    for (w, n) in each.iter().enumerate() {
        let last = store
            .find_token("default", &format!("hash-{w}-{}", n - 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.jti, format!("jti-{w}-{}", n - 1));
    }
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}
