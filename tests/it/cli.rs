//! Configuration validation and the command line.

use std::process::{Command, Stdio};

use ostiary::config::Config;
use ostiary::crypto::secrets::{SecretHash, argon2_verify};

const GOOD: &str = r#"
[database]
url = "sqlite://DIR/ostiary.db"
[[domain]]
name = "default"
issuer = "http://127.0.0.1:8080"
  [[domain.resource_server]]
  audience = "https://api.example.com/orders"
  scopes = [{ name = "orders.read", description = "Read" }]
  [[domain.client]]
  client_id = "backend"
  secret_hash = "sha256:Kr7jBeKsNUCKFDv8AmbQVvcV1Kr4LSbvHxYh0NHBpVE"
  grant_types = ["client_credentials"]
  scopes = ["orders.read"]
"#;

fn errors(text: &str) -> String {
    Config::from_toml_str(text)
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn validation_lists_every_problem_with_its_key_path() {
    let bad = r#"
[[domain]]
name = "default"
issuer = "http://id.example.com"
  [[domain.resource_server]]
  audience = "https://api.example.com"
  scopes = [{ name = "a" }]
  claims = { iss = "x" }
  [[domain.client]]
  client_id = "c"
  secret_hash = "sha256:Kr7jBeKsNUCKFDv8AmbQVvcV1Kr4LSbvHxYh0NHBpVE"
  redirect_uris = ["/relative", "https://app.example.com/cb#frag", "http://app.example.com/cb"]
  scopes = ["b"]
  [[domain.client]]
  client_id = "c"
  secret_hash = "not-a-hash"
  grant_types = ["implicit"]
"#;
    let e = errors(bad);
    for needle in [
        "domain[0].issuer: must use https",
        "domain[0].resource_server[0].claims.iss: is a reserved",
        "domain[0].client[0].redirect_uris[0]: must be an absolute URL",
        "domain[0].client[0].redirect_uris[1]: must not contain a fragment",
        "domain[0].client[0].redirect_uris[2]: must use https",
        "domain[0].client[0].scopes[0]: scope \"b\" is not declared",
        "domain[0].client[1].client_id: duplicate client_id",
        "domain[0].client[1].secret_hash:",
        "domain[0].client[1].grant_types[0]: unsupported grant type",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
    assert!(e.lines().count() >= 9, "{e}");
}

#[test]
fn unknown_keys_and_plaintext_secrets_are_refused() {
    let e = errors(&GOOD.replace("grant_types", "grant_typos"));
    assert!(e.contains("grant_typos"), "{e}");
    assert!(
        e.contains("domain[0].client[0]") || e.contains("domain.0.client.0"),
        "{e}"
    );
    let e = errors(&GOOD.replace("secret_hash = ", "client_secret = \"plain\"\n  secret_hash = "));
    assert!(
        e.contains("client_secret: plaintext secrets are not allowed"),
        "{e}"
    );
    let e = errors("[server]\nlisten = 3\n[[domain]]\nname = \"d\"\nissuer = \"http://127.0.0.1\"\n");
    assert!(e.contains("server.listen"), "{e}");
    assert!(Config::from_toml_str(GOOD).is_ok());
}

#[test]
fn check_config_reports_problems_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD.replace("DIR", &dir.path().display().to_string())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("add client default/backend"), "{stdout}");
    assert!(
        !dir.path().join("ostiary.db").exists(),
        "check-config must not create the store"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        GOOD.replace("http://127.0.0.1:8080", "http://id.example.com/#x"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("domain[0].issuer:"), "{stderr}");

    // Environment overrides apply to check-config too.
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["check-config", "--config"])
        .arg(&good)
        .env("OSTIARY_DOMAIN__0__ISSUER", "ftp://x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // The files serving reads at start are read: a certificate that is not there is refused
    // here, not first by `serve`.
    let missing = dir.path().join("missing.toml");
    let text = GOOD.replace("DIR", &dir.path().display().to_string());
    std::fs::write(
        &missing,
        format!(
            "[server]\ntls_cert_file = \"{0}/none.pem\"\ntls_key_file = \"{0}/none.key\"\n{text}",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["check-config", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("none.pem"), "{stderr}");
}

/// A variable of the environment that is not Unicode does not crash the command: someone
/// else's is ignored, one of ours is refused by name.
#[test]
fn an_environment_variable_that_is_not_unicode() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD.replace("DIR", &dir.path().display().to_string())).unwrap();
    let bytes = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let run = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_ostiary"))
            .args(["check-config", "--config"])
            .arg(&good)
            .env(name, bytes)
            .output()
            .unwrap()
    };
    let out = run("SOMEONE_ELSES");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("OSTIARY_SERVER__LOG_FORMAT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("OSTIARY_SERVER__LOG_FORMAT: is not valid UTF-8"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn hash_secret_generate_and_stdin() {
    let out = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(["hash-secret", "--generate"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let secret = lines.next().unwrap().strip_prefix("secret: ").unwrap();
    let hash = lines.next().unwrap().strip_prefix("secret_hash: ").unwrap();
    assert_eq!(secret.len(), 43);
    assert_eq!(hash, SecretHash::sha256_string(secret));

    let mut child = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(argon2_verify(phc.trim(), "correct horse"));
}

/// Runs the `ostiary` binary with `args` and `--config CONFIG`, writing `stdin` to it: (exit code, stdout, stderr).
pub fn ostiary(args: &[&str], config: &std::path::Path, stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ostiary"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn user_commands_manage_store_users_only() {
    let app = crate::harness::TestApp::spawn().await;
    let config = app.write_config();
    let add = [
        "user",
        "add",
        "--domain",
        "default",
        "dave",
        "--email",
        "dave@example.com",
    ];
    let (code, out, err) = ostiary(&add, &config, Some("first password\n"));
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = ostiary(&add, &config, Some("again long enough\n"));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = ostiary(&["user", "add", "--domain", "default", "eve"], &config, Some(""));
    assert_eq!(code, 1, "an empty password is refused");
    assert!(err.contains("no secret"), "{err}");
    let (code, _, err) = ostiary(
        &["user", "add", "--domain", "default", "eve"],
        &config,
        Some("short\n"),
    );
    assert_eq!(code, 1, "a password under 8 characters is refused");
    assert!(err.contains("at least 8 characters"), "{err}");
    // Two domains: --domain is required.
    let (code, _, err) = ostiary(&["user", "list"], &config, None);
    assert_eq!(code, 1);
    assert!(err.contains("--domain"), "{err}");

    let (code, _, _) = ostiary(
        &["user", "set-password", "--domain", "default", "dave"],
        &config,
        Some("second password\n"),
    );
    assert_eq!(code, 0);
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    let (hash, claims): (String, String) =
        sqlx::query_as("SELECT password_hash, claims FROM users WHERE username = 'dave'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(argon2_verify(&hash, "second password"));
    assert!(!argon2_verify(&hash, "first password"));
    assert!(claims.contains("dave@example.com"));

    let (code, _, _) = ostiary(&["user", "disable", "--domain", "default", "dave"], &config, None);
    assert_eq!(code, 0);
    let (_, out, _) = ostiary(&["user", "list", "--domain", "default"], &config, None);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"dave\tdisabled\tstore"), "{out}");
    assert!(lines.contains(&"alice\tactive\tconfiguration"), "{out}");
    let (code, _, err) = ostiary(
        &["user", "disable", "--domain", "default", "nobody"],
        &config,
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("no user"), "{err}");

    // A user declared in configuration (the harness declares carol) is managed in the file.
    let (code, _, err) = ostiary(
        &["user", "set-password", "--domain", "default", "carol"],
        &config,
        Some("x\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("declared in configuration"), "{err}");
    let (_, out, _) = ostiary(&["user", "list", "--domain", "default"], &config, None);
    assert!(out.contains("carol\tactive\tconfiguration"), "{out}");
    // Each change is audited, by the CLI.
    let kinds: Vec<(String,)> =
        sqlx::query_as("SELECT kind FROM audit_events WHERE actor = 'cli' ORDER BY at, kind")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let kinds: Vec<&str> = kinds.iter().map(|k| k.0.as_str()).collect();
    for want in [
        "admin.user.created",
        "admin.user.password_reset",
        "admin.user.updated",
    ] {
        assert!(kinds.contains(&want), "{want} not in {kinds:?}");
    }
}
