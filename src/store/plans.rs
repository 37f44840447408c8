//! The plans of the statements that find rows by a key, on a fresh database: migrated, empty,
//! never analyzed, which is what a new deployment's connections plan against.
//!
//! On PostgreSQL each statement is planned generically (`plan_cache_mode = force_generic_plan`:
//! the plan a connection caches after five executions) and must use the index of the key it
//! names, and only that. Before migration 7 put the domain last in the indexes, 19 of these
//! statements used an index that leads with `domain` instead (the opaque-token lookup scanned a
//! domain's tokens along `tokens_jti (domain, jti)`, 20 to 97 ms each,
//! `bench/results/2026-11-25-soak-first-minute-plans.txt`). On SQLite the same statements must
//! search the same indexes (SQLite names a table's key `sqlite_autoindex_<table>_1`).

use std::collections::BTreeSet;

use sqlx::{Connection, Row};

use super::SqlStore;
use super::{admin, device, logout, refresh, signin};

/// A statement and the indexes (PostgreSQL names) its plan may use, all of them.
struct Case {
    name: &'static str,
    sql: String,
    indexes: &'static [&'static str],
}

/// The unique (username, domain) index of users; SQLite keeps the table's UNIQUE (domain,
/// username), its second autoindex.
const USERS_USERNAME: &str = "users_username";

fn cases() -> Vec<Case> {
    let case = |name, sql: &str, indexes| Case {
        name,
        sql: sql.to_string(),
        indexes,
    };
    let revoke_one = refresh::revoke_family_tokens_sql("$2");
    vec![
        case("find_token", &super::FIND_TOKEN, &["tokens_pkey"]),
        case("revoke_token", super::REVOKE_TOKEN, &["tokens_pkey"]),
        case(
            "revoke_tokens_by_jti",
            super::REVOKE_TOKENS_BY_JTI,
            &["tokens_pkey"],
        ),
        case(
            "jwt_states",
            &super::lookups::jwt_states_sql(false, 2),
            &["revoked_jtis_pkey", "users_pkey"],
        ),
        case(
            "tokens_and_users",
            &super::lookups::tokens_and_users_sql(false, 2),
            &["tokens_pkey", "users_pkey"],
        ),
        case("find_family", &refresh::FIND_FAMILY, &["refresh_families_pkey"]),
        case(
            "families_with_users",
            &super::lookups::families_with_users_sql(false, 2),
            &["refresh_families_pkey", "users_pkey"],
        ),
        case(
            "take_refreshes",
            &refresh::take_refreshes_sql(false, 2),
            &["tokens_pkey"],
        ),
        case(
            "insert_successor",
            &refresh::insert_successors_sql(false, 2),
            &["refresh_families_pkey"],
        ),
        case("rotate_refresh", refresh::ROTATE_REFRESH, &["tokens_pkey"]),
        case(
            "revoke_family",
            refresh::REVOKE_FAMILY,
            &["refresh_families_pkey"],
        ),
        case("revoke_family_tokens", &revoke_one, &["tokens_family"]),
        case(
            "find_live_session",
            &signin::FIND_LIVE_SESSION,
            &["sessions_pkey"],
        ),
        case("touch_session", signin::TOUCH_SESSION, &["sessions_pkey"]),
        case("renew_session", &signin::RENEW_SESSION, &["sessions_pkey"]),
        case("find_user_by_id", signin::FIND_USER_BY_ID, &["users_pkey"]),
        case(
            "find_auth_request",
            &signin::FIND_AUTH_REQUEST,
            &["auth_requests_pkey"],
        ),
        case(
            "take_auth_request",
            signin::TAKE_AUTH_REQUEST,
            &["auth_requests_pkey"],
        ),
        case("find_code", &signin::FIND_CODE, &["auth_codes_pkey"]),
        case(
            "find_code_with_user",
            &signin::FIND_CODE_WITH_USER,
            &["auth_codes_pkey", "users_pkey"],
        ),
        case("redeem_code", &signin::REDEEM_CODE, &["auth_codes_pkey"]),
        case("set_code_access", signin::SET_CODE_ACCESS, &["auth_codes_pkey"]),
        case("mark_code_reused", signin::MARK_CODE_REUSED, &["auth_codes_pkey"]),
        case("find_consent", signin::FIND_CONSENT, &["consents_pkey"]),
        case("update_consent", signin::UPDATE_CONSENT, &["consents_pkey"]),
        case("lock_bucket", signin::LOCK_BUCKET, &["login_attempts_pkey"]),
        case("clear_bucket", signin::CLEAR_BUCKET, &["login_attempts_pkey"]),
        case(
            "update_store_user_claims",
            admin::UPDATE_STORE_USER_CLAIMS,
            &["users_pkey"],
        ),
        case(
            "find_device_code",
            &device::FIND_DEVICE_CODE,
            &["device_codes_pkey"],
        ),
        case(
            "approve_device_code",
            device::APPROVE_DEVICE_CODE,
            &["device_codes_pkey"],
        ),
        case(
            "deny_device_code",
            device::DENY_DEVICE_CODE,
            &["device_codes_pkey"],
        ),
        case("poll_on_time", device::POLL_ON_TIME, &["device_codes_pkey"]),
        case(
            "set_device_code_access",
            device::SET_DEVICE_CODE_ACCESS,
            &["device_codes_pkey"],
        ),
        case(
            "mark_device_code_reused",
            device::MARK_DEVICE_CODE_REUSED,
            &["device_codes_pkey"],
        ),
        case("poll_too_fast", device::POLL_TOO_FAST, &["device_codes_pkey"]),
        case(
            "redeem_device_code",
            &device::REDEEM_DEVICE_CODE,
            &["device_codes_pkey"],
        ),
        // Lookups by a key that is not the primary key use that key's index, domain last.
        case("find_user", super::FIND_USER, &[USERS_USERNAME]),
        case(
            "user_and_locks",
            &signin::USER_AND_LOCKS,
            &[USERS_USERNAME, "login_attempts_pkey"],
        ),
        case(
            "sign_in_read",
            &signin::SIGN_IN_READ,
            &["auth_requests_pkey", USERS_USERNAME, "login_attempts_pkey"],
        ),
        case("set_user_password", super::SET_USER_PASSWORD, &["users_pkey"]),
        case("set_user_status", super::SET_USER_STATUS, &[USERS_USERNAME]),
        case("config_users", super::CONFIG_USERS, &["users_config"]),
        case("family_jtis", refresh::FAMILY_JTIS, &["family_jtis_family"]),
        case(
            "find_live_session_by_sid",
            &signin::FIND_LIVE_SESSION_BY_SID,
            &["sessions_sid"],
        ),
        case("end_session", logout::END_SESSION, &["sessions_sid"]),
        case(
            "grant_standing",
            logout::GRANT_STANDING,
            &["sessions_sid", "consents_pkey"],
        ),
        case("live_sessions", &logout::LIVE_SESSIONS, &["sessions_user"]),
        case("unended_sessions", &logout::UNENDED_SESSIONS, &["sessions_user"]),
        case("unended_session", &logout::UNENDED_SESSION, &["sessions_pkey"]),
        case(
            "extend_session_clients",
            logout::EXTEND_SESSION_CLIENTS,
            &["session_clients_pkey"],
        ),
        case(
            "session_clients",
            logout::SESSION_CLIENTS,
            &["session_clients_pkey"],
        ),
        case(
            "client_sids",
            logout::CLIENT_SIDS,
            &["session_clients_user", "sessions_sid"],
        ),
        case(
            "session_families",
            logout::SESSION_FAMILIES,
            &["refresh_families_sid"],
        ),
        case("user_families", logout::USER_FAMILIES, &["refresh_families_user"]),
        case(
            "expire_session_codes",
            logout::EXPIRE_SESSION_CODES,
            &["auth_codes_sid"],
        ),
        case(
            "expire_session_device_codes",
            logout::EXPIRE_SESSION_DEVICE_CODES,
            &["device_codes_sid"],
        ),
        case(
            "session_code_access",
            logout::SESSION_CODE_ACCESS,
            &["auth_codes_sid", "device_codes_sid"],
        ),
        case(
            "due_logouts",
            &logout::DUE_LOGOUTS,
            &["logout_deliveries_pending"],
        ),
        case(
            "find_device_code_by_user_code",
            &device::FIND_DEVICE_CODE_BY_USER_CODE,
            &["device_codes_user_code"],
        ),
    ]
}

/// The highest `$N` of a statement.
fn parameters(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Indexes used by a PostgreSQL plan (text format), and `seq:<table>` for each sequential scan.
fn postgres_indexes(plan: &[String]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in plan {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let next = |k: usize| words.get(i + k).map(|s| s.to_string());
            match (*w, i.checked_sub(1).and_then(|p| words.get(p)).copied()) {
                ("using", Some("Scan")) => used.extend(next(1)),
                ("Scan", Some("Seq")) if next(1).as_deref() == Some("on") => {
                    used.extend(next(2).map(|t| format!("seq:{t}")))
                }
                ("Scan", Some("Index")) if next(1).as_deref() == Some("on") => used.extend(next(2)),
                _ => {}
            }
        }
    }
    used
}

/// Indexes used by a SQLite query plan, and `seq:<table>` for each full scan. The scan of a
/// co-routine (a subquery in FROM, e.g. the one constant row a LEFT JOIN hangs on) and of
/// constant rows (`SCAN CONSTANT ROW`, a VALUES list's `SCAN 2 CONSTANT ROWS` or
/// `SCAN 2-ROW VALUES CLAUSE`) reads no table, and neither do the branch labels of an OR of
/// keys (`MULTI-INDEX OR`, then `INDEX 1`, `INDEX 2`.. above each branch's search).
fn sqlite_indexes(plan: &[String]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let coroutines: BTreeSet<&str> = plan
        .iter()
        .filter_map(|d| d.trim().strip_prefix("CO-ROUTINE "))
        .map(str::trim)
        .collect();
    for detail in plan {
        let words: Vec<&str> = detail.split_whitespace().collect();
        if matches!(words.as_slice(), ["MULTI-INDEX", "OR"] | ["INDEX", _]) {
            continue;
        }
        if let (Some(&"SCAN"), Some(table)) = (words.first(), words.get(1))
            && *table != "CONSTANT"
            && words.get(2) != Some(&"CONSTANT")
            && words.get(2) != Some(&"VALUES")
            && !coroutines.contains(table)
        {
            used.insert(format!("seq:{table}"));
        }
        if let Some(i) = words.iter().position(|w| *w == "INDEX") {
            used.extend(words.get(i + 1).map(|s| s.to_string()));
        }
    }
    used
}

/// The SQLite name of an index named as on PostgreSQL (`<table>_pkey` is the key's autoindex).
fn sqlite_name(index: &str) -> String {
    match index.strip_suffix("_pkey") {
        Some(table) => format!("sqlite_autoindex_{table}_1"),
        None if index == USERS_USERNAME => "sqlite_autoindex_users_2".to_string(),
        None => index.to_string(),
    }
}

/// A new, migrated database of its own: on the PostgreSQL of `OSTIARY_TEST_DATABASE_URL` when
/// it names one, else a SQLite file in `dir`. Returns its URL and whether it is PostgreSQL.
async fn fresh_database(dir: &tempfile::TempDir) -> (String, bool) {
    sqlx::any::install_default_drivers();
    let (url, postgres) = match std::env::var("OSTIARY_TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            let name = format!(
                "plans_{}",
                crate::crypto::secrets::random_id()
                    .to_lowercase()
                    .replace(['-', '_'], "")
            );
            let mut admin = sqlx::AnyConnection::connect(&base).await.expect("connect");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .expect("create database");
            let mut u = url::Url::parse(&base).expect("database url");
            u.set_path(&format!("/{name}"));
            (u.to_string(), true)
        }
        _ => (format!("sqlite://{}/plans.db", dir.path().display()), false),
    };
    let store = SqlStore::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    drop(store);
    (url, postgres)
}

#[tokio::test]
async fn key_lookups_use_their_keys_index_on_a_fresh_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, postgres) = fresh_database(&dir).await;
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    if postgres {
        sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await
            .expect("set plan_cache_mode");
    }
    let mut wrong = Vec::new();
    for case in cases() {
        let (plan, used, expected) = if postgres {
            let nulls = vec!["NULL"; parameters(&case.sql)].join(", ");
            let explain = format!(
                "PREPARE plan_case AS {}; EXPLAIN EXECUTE plan_case({nulls}); DEALLOCATE plan_case",
                case.sql
            );
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(explain))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
            let used = postgres_indexes(&plan);
            let expected: BTreeSet<String> = case.indexes.iter().map(|i| i.to_string()).collect();
            (plan, used, expected)
        } else {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", case.sql)))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
            let used = sqlite_indexes(&plan);
            let expected: BTreeSet<String> = case.indexes.iter().map(|i| sqlite_name(i)).collect();
            (plan, used, expected)
        };
        if used != expected {
            wrong.push(format!(
                "{}: uses {used:?}, expected {expected:?}\n  {}",
                case.name,
                plan.join("\n  ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "plans that do not use their key's index:\n{}",
        wrong.join("\n")
    );
}

/// The insert of a group of successors, planned for the values of 8 rows (PostgreSQL plans a
/// statement for its values on its first five executions, and for as long as that plan costs
/// less than a generic one), on a database that grew without being analyzed: 65 families and
/// 2,000 tokens, as the first seconds of a new deployment's refreshes leave it. It must look
/// each row's family up by its key. With EXISTS, PostgreSQL joined a scan of the families to
/// the VALUES list, read again for every family (`bench/results/2026-12-02-refresh-plans.txt`).
#[tokio::test]
async fn successor_insert_looks_families_up_by_key_on_a_database_not_yet_analyzed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, postgres) = fresh_database(&dir).await;
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    let mut setup = Vec::new();
    if postgres {
        setup.push("ALTER TABLE tokens SET (autovacuum_enabled = false)".to_string());
        setup.push("ALTER TABLE refresh_families SET (autovacuum_enabled = false)".to_string());
    }
    let families: Vec<String> = (0..65)
        .map(|f| format!("('f{f}', 'd', 'c', 'u{f}', 'openid', 's{f}', 1, 0, '[]', NULL, 0, 9, NULL)"))
        .collect();
    setup.push(format!(
        "INSERT INTO refresh_families (id, domain, client_id, user_id, scope, sid, offline, \
         auth_time, amr, claims, created_at, expires_at, revoked_at) VALUES {}",
        families.join(", ")
    ));
    for part in 0..20 {
        let tokens: Vec<String> = (part * 100..part * 100 + 100)
            .map(|t| {
                format!(
                    "('h{t}', 'd', 'refresh', 'c', 'u', 'openid', '[]', '{{}}', 'j{t}', 0, 9, \
                     NULL, 'f{}', 1)",
                    t % 65
                )
            })
            .collect();
        setup.push(format!(
            "INSERT INTO tokens ({}) VALUES {}",
            super::TOKEN_COLUMNS,
            tokens.join(", ")
        ));
    }
    for sql in setup {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("populate");
    }

    let rows = 8;
    let sql = refresh::insert_successors_sql(false, rows);
    let (plan, used, expected) = if postgres {
        let values: Vec<String> = (0..rows)
            .map(|r| {
                format!(
                    "'n{r}', 'd', 'refresh', 'c', 'u', 'openid', '[]', '{{}}', 'nj{r}', 0, 9, NULL, \
                     'f{r}', NULL"
                )
            })
            .collect();
        let explain = format!(
            "SET plan_cache_mode = force_custom_plan; PREPARE plan_case AS {sql}; \
             EXPLAIN EXECUTE plan_case({}); DEALLOCATE plan_case",
            values.join(", ")
        );
        let lines = sqlx::raw_sql(sqlx::AssertSqlSafe(explain))
            .fetch_all(&mut conn)
            .await
            .expect("explain");
        let plan: Vec<String> = lines.iter().map(|r| r.get::<String, _>(0)).collect();
        let used = postgres_indexes(&plan);
        (plan, used, "refresh_families_pkey".to_string())
    } else {
        let lines = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&mut conn)
            .await
            .expect("explain");
        let plan: Vec<String> = lines.iter().map(|r| r.get::<String, _>("detail")).collect();
        let used = sqlite_indexes(&plan);
        (plan, used, sqlite_name("refresh_families_pkey"))
    };
    assert_eq!(
        used,
        BTreeSet::from([expected]),
        "the successors' insert on a database not yet analyzed:\n  {}",
        plan.join("\n  ")
    );
    assert!(
        !plan.iter().any(|line| line.contains("Nested Loop")),
        "the VALUES list is read once:\n  {}",
        plan.join("\n  ")
    );
}

#[test]
fn plan_readers_name_the_indexes_and_scans() {
    let pg = [
        "Update on tokens  (cost=0.14..8.16 rows=0 width=0)",
        "  ->  Index Scan using tokens_jti on tokens  (cost=0.14..8.16 rows=1 width=14)",
        "        SubPlan 1",
        "          ->  Bitmap Index Scan on tokens_family  (cost=0.00..4.2 rows=1 width=0)",
        "          ->  Seq Scan on users  (cost=0.00..1.01 rows=1 width=0)",
        "  Conflict Arbiter Indexes: tokens_pkey",
    ]
    .map(String::from);
    let used: Vec<String> = postgres_indexes(&pg).into_iter().collect();
    assert_eq!(used, ["seq:users", "tokens_family", "tokens_jti"]);
    let lite = [
        "SEARCH tokens USING INDEX sqlite_autoindex_tokens_1 (hash=?)",
        "CORRELATED SCALAR SUBQUERY 1",
        "SEARCH users USING COVERING INDEX users_source (domain=?)",
        "SCAN refresh_families",
        "SCAN CONSTANT ROW",
        "CO-ROUTINE o",
        "SCAN o",
        "SCAN 2 CONSTANT ROWS",
        "SCAN 2-ROW VALUES CLAUSE",
    ]
    .map(String::from);
    let used: Vec<String> = sqlite_indexes(&lite).into_iter().collect();
    assert_eq!(
        used,
        [
            "seq:refresh_families",
            "sqlite_autoindex_tokens_1",
            "users_source"
        ]
    );
    assert_eq!(parameters("SELECT $1, $14 WHERE a = $3"), 14);
    assert_eq!(sqlite_name("tokens_pkey"), "sqlite_autoindex_tokens_1");
    assert_eq!(sqlite_name(USERS_USERNAME), "sqlite_autoindex_users_2");
    assert_eq!(sqlite_name("tokens_family"), "tokens_family");
}
