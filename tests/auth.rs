//! Each authentication mode against the emulator, token refresh, and a
//! rotated federated token file.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn workload_identity() {
    let emu = emulator_with(&[("a", "wi")]);
    let m = Mount::new(&emu, &["--auth", "workload-identity"]);
    assert_eq!(m.read("a").unwrap(), b"wi");
    assert!(emu.counts().get("token_client_assertion") >= 1);
}

#[test]
fn managed_identity() {
    let emu = emulator_with(&[("a", "mi")]);
    let env = mi_env(&emu);
    let m = Mount::with_env(&emu, &env, &["--auth", "managed-identity"]);
    assert_eq!(m.read("a").unwrap(), b"mi");
    assert!(emu.counts().get("token_managed_identity") >= 1);
}

#[test]
fn azure_cli() {
    let emu = emulator_with(&[("a", "cli")]);
    let bin = tempfile::tempdir().unwrap();
    let env = cli_env(&emu, bin.path());
    let m = Mount::with_env(&emu, &env, &["--auth", "azure-cli"]);
    assert_eq!(m.read("a").unwrap(), b"cli");
}

#[test]
fn client_secret() {
    let emu = emulator_with(&[("a", "sp")]);
    let env = sp_env(&emu);
    let m = Mount::with_env(&emu, &env, &["--auth", "client-secret"]);
    assert_eq!(m.read("a").unwrap(), b"sp");
    assert!(emu.counts().get("token_client_secret") >= 1);
}

#[test]
fn auto_prefers_client_secret_then_workload_identity_then_managed_identity_then_cli() {
    let emu = emulator_with(&[("a", "auto")]);
    // Workload identity environment only.
    let m = Mount::with_env(&emu, &wi_env(&emu), &[]);
    assert_eq!(m.read("a").unwrap(), b"auto");
    assert!(m.log().contains("workload-identity"), "{}", m.log());
    drop(m);
    // Client secret wins over workload identity.
    let mut env = wi_env(&emu);
    env.push((
        "AZURE_CLIENT_SECRET".into(),
        emu.info().client_secret.clone(),
    ));
    let m = Mount::with_env(&emu, &env, &[]);
    assert_eq!(m.read("a").unwrap(), b"auto");
    assert!(m.log().contains("client-secret"), "{}", m.log());
    drop(m);
    // Managed identity when its endpoint is present.
    let env = mi_env(&emu);
    let m = Mount::with_env(&emu, &env, &[]);
    assert!(m.log().contains("managed-identity"), "{}", m.log());
    drop(m);
    // Otherwise the Azure CLI.
    let bin = tempfile::tempdir().unwrap();
    let env = cli_env(&emu, bin.path());
    let m = Mount::with_env(&emu, &env, &[]);
    assert_eq!(m.read("a").unwrap(), b"auto");
    assert!(m.log().contains("azure-cli"), "{}", m.log());
}

#[test]
fn reads_go_on_past_token_expiry() {
    let emu = emulator_cfg(&[("a", "1"), ("b", "2"), ("c", "3")], |c| {
        c.token_lifetime = Duration::from_secs(2);
    });
    let m = Mount::new(&emu, &[]);
    assert_eq!(m.read("a").unwrap(), b"1");
    let tokens_before = emu.counts().get("token_client_assertion");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(m.read("b").unwrap(), b"2");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(m.read("c").unwrap(), b"3");
    assert!(
        emu.counts().get("token_client_assertion") >= tokens_before + 2,
        "expired tokens were replaced"
    );
}

#[test]
fn a_rotated_federated_token_file_is_picked_up() {
    let emu = emulator_cfg(&[("a", "1"), ("b", "2")], |c| {
        c.token_lifetime = Duration::from_secs(2);
    });
    let m = Mount::new(&emu, &[]);
    assert_eq!(m.read("a").unwrap(), b"1");
    // The emulator now rejects the old assertion; akvfs must read the new file.
    emu.rotate_federated_token();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(m.read("b").unwrap(), b"2");
}

#[test]
fn check_reports_identity_and_secret_count_but_no_values() {
    let emu = emulator_with(&[("one", "VALUE-ONE"), ("two", "VALUE-TWO")]);
    let mut cmd = akvfs(&wi_env(&emu));
    cmd.arg("check")
        .arg(&emu.info().vault_url)
        .args(conn_args(&emu));
    let out = run(cmd);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&emu.info().client_id), "{}", out.stdout);
    assert!(out.stdout.contains("2 secrets"), "{}", out.stdout);
    assert!(out.stdout.contains("one") && out.stdout.contains("two"));
    assert!(!out.stdout.contains("VALUE-") && !out.stderr.contains("VALUE-"));
}
