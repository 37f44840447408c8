//! Upgrades: rows written under an earlier schema, then the current migrations applied, then
//! the store used as the server uses it.

use ostiary::store::device::{DeviceCodeRow, DeviceStore};
use ostiary::store::refresh::{FamilyRow, RefreshStore};
use ostiary::store::signin::{CodeRow, SignInStore};
use ostiary::store::{SqlStore, TokenRow, TokenStore};
use sqlx::Connection;

use crate::harness::{fresh_database, on_postgres};

const DOMAIN: &str = "default";
const NOW: i64 = 1_000;

/// An opaque access token as version 8 issued it: a random jti unrelated to its hash.
fn old_token(hash: &str, jti: &str) -> TokenRow {
    TokenRow {
        hash: hash.into(),
        domain: DOMAIN.into(),
        kind: "access".into(),
        client_id: "c".into(),
        sub: "u".into(),
        scope: "openid".into(),
        aud: "[]".into(),
        claims: "{}".into(),
        jti: jti.into(),
        issued_at: NOW,
        expires_at: NOW + 3_600,
        revoked_at: None,
        family_id: None,
        used_at: None,
    }
}

fn redeemed_code(access_jti: &str) -> CodeRow {
    CodeRow {
        hash: "code-hash".into(),
        domain: DOMAIN.into(),
        client_id: "c".into(),
        user_id: "u".into(),
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_given: 1,
        scope: "openid".into(),
        nonce: None,
        code_challenge: None,
        code_challenge_method: None,
        sid: "sid".into(),
        auth_time: NOW,
        amr: "[]".into(),
        session_expires_at: NOW + 3_600,
        issued_at: NOW,
        expires_at: NOW + 60,
        used_at: Some(NOW),
        access_jti: Some(access_jti.into()),
        access_expires_at: Some(NOW + 3_600),
        family_id: None,
        claims: None,
        reused_at: None,
    }
}

fn redeemed_device_code() -> DeviceCodeRow {
    DeviceCodeRow {
        hash: "device-hash".into(),
        domain: DOMAIN.into(),
        user_code_hash: "user-code-hash".into(),
        client_id: "c".into(),
        scope: "openid".into(),
        status: ostiary::store::device::status::APPROVED.into(),
        user_id: Some("u".into()),
        sid: None,
        auth_time: Some(NOW),
        amr: Some("[]".into()),
        session_expires_at: None,
        poll_interval: 5,
        last_polled_at: None,
        issued_at: NOW,
        expires_at: NOW + 600,
        decided_at: Some(NOW),
        used_at: Some(NOW),
        access_jti: None,
        access_expires_at: None,
        family_id: None,
        reused_at: None,
    }
}

/// Migration 9 (a stored token's jti is its hash, and the `tokens_jti` index is gone): a token
/// issued before it keeps its jti, and the code, the device code and the family that refer to
/// it by that jti are moved to its hash, so that revoking by jti, which now finds a token by its
/// key, still revokes it. A JWT's jti in a family (no stored row) is left as it was.
#[tokio::test]
async fn tokens_issued_before_version_9_are_still_revoked_through_what_refers_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = SqlStore::connect(&url, 4).await.unwrap();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let migrator = if on_postgres() {
        sqlx::migrate!("migrations/postgres")
    } else {
        sqlx::migrate!("migrations/sqlite")
    };
    migrator.run_to(8, &mut conn).await.unwrap();
    conn.close().await.unwrap();

    for (hash, jti) in [
        ("h-code", "j-code"),
        ("h-device", "j-device"),
        ("h-family", "j-family"),
    ] {
        store.insert_token(&old_token(hash, jti)).await.unwrap();
    }
    store.insert_code(&redeemed_code("j-code")).await.unwrap();
    store.insert_device_code(&redeemed_device_code()).await.unwrap();
    // Not part of the insert: a redemption records it.
    store
        .set_device_code_access(DOMAIN, "device-hash", "j-device", NOW + 3_600, None)
        .await
        .unwrap();
    let family = FamilyRow {
        id: "fam".into(),
        domain: DOMAIN.into(),
        client_id: "c".into(),
        user_id: "u".into(),
        scope: "openid".into(),
        sid: String::new(),
        offline: 0,
        auth_time: NOW,
        amr: "[]".into(),
        claims: None,
        created_at: NOW,
        expires_at: NOW + 9_000,
        revoked_at: None,
    };
    store.insert_family(&family).await.unwrap();
    for jti in ["j-family", "j-jwt"] {
        store
            .add_family_jti(DOMAIN, "fam", jti, NOW + 3_600)
            .await
            .unwrap();
    }

    store.migrate().await.unwrap();

    let code = store.find_code(DOMAIN, "code-hash").await.unwrap().unwrap();
    assert_eq!(code.access_jti.as_deref(), Some("h-code"));
    let device = store
        .find_device_code(DOMAIN, "device-hash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.access_jti.as_deref(), Some("h-device"));
    let mut jtis = store.revoke_family(DOMAIN, "fam", NOW + 1).await.unwrap();
    jtis.sort();
    assert_eq!(jtis, ["h-family", "j-jwt"]);
    // The token keeps the jti it was issued with (introspection shows the same one as before).
    let token = store.find_token(DOMAIN, "h-code").await.unwrap().unwrap();
    assert_eq!(token.jti, "j-code");

    for jti in ["h-code", "h-device", "h-family"] {
        assert_eq!(
            store.revoke_tokens_by_jti(DOMAIN, jti, NOW + 2).await.unwrap(),
            1,
            "{jti}"
        );
        let token = store.find_token(DOMAIN, jti).await.unwrap().unwrap();
        assert_eq!(token.revoked_at, Some(NOW + 2), "{jti}");
    }
    assert_eq!(
        store
            .revoke_tokens_by_jti(DOMAIN, "j-jwt", NOW + 2)
            .await
            .unwrap(),
        0
    );
    store.close().await;
}
