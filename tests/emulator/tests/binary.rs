//! The `akvfs-emulator` binary: flags, seed file, the ready line, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "akvfs-emulator-test-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn ready_line_seed_and_sigterm() {
    let dir = scratch_dir("bin");
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        r#"{"secrets": [
              {"name": "db-password", "value": "s3cret", "contentType": "text/plain"},
              {"name": "api-key", "versions": [{"value": "v1"}, {"value": "v2", "enabled": false}]}
            ],
            "identities": [{"client_id": "reader", "client_secret": "pw", "permissions": ["get"]}]}"#,
    )
    .expect("seed written");
    let state = dir.join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_akvfs-emulator"))
        .args(["--state-dir"])
        .arg(&state)
        .args(["--seed"])
        .arg(&seed)
        .args([
            "--vault-host",
            "myvault.vault.azure.net",
            "--hostname",
            "emulator.test",
            "--authority-host",
            "login.emulator.test",
            "--token-lifetime",
            "600",
            "--requests-per-10s",
            "100",
            "--identity-header",
            "fixed-header",
            "--extra-vault-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ready line within 60 s");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    for key in [
        "vault_url",
        "authority_host",
        "tenant_id",
        "client_id",
        "federated_token_file",
        "identity_endpoint",
        "identity_header",
        "ca_file",
        "admin_url",
    ] {
        assert!(ready[key].is_string(), "ready line lacks {key}: {line}");
    }
    assert!(ready["vault_url"]
        .as_str()
        .expect("url")
        .starts_with("https://myvault.vault.azure.net:"));
    let port = ready["address"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("address with a port");
    assert_eq!(
        ready["authority_host"],
        format!("https://login.emulator.test:{port}")
    );
    assert_eq!(ready["identity_header"], "fixed-header");
    let ca_file = PathBuf::from(ready["ca_file"].as_str().expect("ca"));
    assert_eq!(ca_file, state.join("ca.pem"));
    let ca = std::fs::read_to_string(&ca_file).expect("CA written");
    let token_file = PathBuf::from(ready["federated_token_file"].as_str().expect("file"));
    let token = std::fs::read_to_string(&token_file).expect("federated token written");
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT without a trailing newline"
    );

    // The seed is served: read it through the admin API over HTTPS, trusting only the CA.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("pem")])
            .build()
            .expect("client");
        let admin = ready["admin_url"].as_str().expect("admin");
        let secrets: serde_json::Value = admin_get(&client, &format!("{admin}/secrets")).await;
        let names: Vec<&str> = secrets["secrets"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert_eq!(names, ["api-key", "db-password"]);
        assert_eq!(secrets["secrets"][0]["versions"][1]["enabled"], false);
        let ids: serde_json::Value = admin_get(&client, &format!("{admin}/identities")).await;
        assert_eq!(ids.as_array().map(Vec::len), Some(2));

        // The extra vault: listed in the ready line, with the identities and
        // none of the secrets.
        let extras = ready["extra_vaults"].as_array().expect("extra_vaults");
        assert_eq!(extras.len(), 1, "{line}");
        let extra_admin = extras[0]["admin_url"].as_str().expect("admin_url");
        assert!(extras[0]["vault_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:") && extra_admin.starts_with(u)));
        let secrets: serde_json::Value =
            admin_get(&client, &format!("{extra_admin}/secrets")).await;
        assert_eq!(secrets["secrets"].as_array().map(Vec::len), Some(0));
        let ids: serde_json::Value = admin_get(&client, &format!("{extra_admin}/identities")).await;
        assert_eq!(ids.as_array().map(Vec::len), Some(2));
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("exits");
    assert_eq!(exit.code(), Some(0), "SIGTERM ends the emulator cleanly");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_and_bad_seed_fail_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_akvfs-emulator"))
        .args(["--requests-per-10s", "0"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_akvfs-emulator"))
        .args(["--authority-host", "https://login.microsoftonline.com:443"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("authority host") && stderr.contains("without scheme or port"),
        "{stderr}"
    );
    let dir = scratch_dir("badseed");
    let seed = dir.join("seed.json");
    std::fs::write(&seed, r#"{"secrets": [{"name": "x"}]}"#).expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_akvfs-emulator"))
        .arg("--seed")
        .arg(&seed)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs \"value\" or \"versions\""),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET of an admin URL, its JSON body.
async fn admin_get(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .expect("admin answers")
        .json_value()
        .await
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }
}
