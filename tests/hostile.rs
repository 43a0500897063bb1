//! A revoked identity, a hostile vault host and oversized answers, through
//! real mounts against the emulator:
//!
//! - identity loss (a revoked client secret, a vault that keeps answering
//!   401 to new tokens) fails closed: cached values are wiped and reads get
//!   EACCES; an outage of the token endpoint (503) keeps serving them;
//! - one 401 from the vault is retried with a newly issued token, so a single
//!   bad answer does not wipe anything;
//! - a challenge naming another resource never makes akvfs request or send a
//!   token for it, and the mount recovers once the challenge is honest again;
//! - a 10 MB answer is an error, not an allocation;
//! - the client secret is gone from the process environment;
//! - values full of JSON escapes read back byte for byte.
//!
//! Every wait is a generous deadline on an observable state; nothing asserts
//! how long anything took.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// A service-principal mount whose tokens expire every 2 seconds, refreshed
/// every second, so a refused token request is met within a few cycles.
fn sp_mount(secrets: &[(&str, &str)]) -> (Emulator, Mount) {
    let emu = emulator_cfg(secrets, |c| c.token_lifetime = Duration::from_secs(2));
    let m = Mount::with_env(
        &emu,
        &sp_env(&emu),
        &["--auth", "client-secret", "--refresh-interval", "1s"],
    );
    (emu, m)
}

/// Replaces the default identity's client secret: Entra now answers
/// 401 invalid_client (AADSTS7000215); the vault still honours tokens issued
/// before.
fn revoke_client_secret(emu: &Emulator) {
    let mut id = akvfs_emulator::Identity::new(&emu.info().client_id);
    id.client_secret = Some("rotated-by-the-tenant-admin".into());
    id.federated_subjects = vec![akvfs_emulator::config::DEFAULT_FEDERATED_SUBJECT.into()];
    id.managed_identity = true;
    emu.inner().add_identity(id).expect("identity replaced");
}

#[test]
fn a_revoked_client_secret_fails_closed() {
    let value = marker("idloss");
    let (emu, m) = sp_mount(&[("a", &value)]);
    assert_eq!(m.read("a").unwrap(), value.as_bytes());
    revoke_client_secret(&emu);
    let closed = wait_until(LIMIT, || errno_of(m.read("a")) == libc::EACCES);
    assert!(
        closed,
        "still served after the identity lost its secret:\n{}",
        m.log()
    );
    assert!(is_mounted(&m.path), "the daemon must stay up");
    let logged = wait_until(LIMIT, || m.log().contains("may no longer obtain a token"));
    assert!(logged, "{}", m.log());
    assert!(!m.log().contains(&value), "a value reached the log");
}

#[test]
fn a_token_endpoint_outage_keeps_serving_cached_values() {
    let value = marker("outage");
    let (emu, m) = sp_mount(&[("a", &value)]);
    assert_eq!(m.read("a").unwrap(), value.as_bytes());
    emu.inject_fault(
        Fault::status(503).for_operation(akvfs_emulator::Operation::TokenClientSecret),
    );
    // Several refresh cycles meet the outage once the token has expired.
    let met = wait_until(LIMIT, || emu.counts().get("faulted") >= 4);
    assert!(met, "the refresher never asked for a token:\n{}", m.log());
    assert_eq!(m.read("a").unwrap(), value.as_bytes());
    emu.clear_faults();
}

#[test]
fn a_vault_that_keeps_refusing_new_tokens_fails_closed() {
    let value = marker("v401");
    let (emu, m) = sp_mount(&[("a", &value)]);
    assert_eq!(m.read("a").unwrap(), value.as_bytes());
    for op in [
        akvfs_emulator::Operation::ListSecrets,
        akvfs_emulator::Operation::GetSecret,
    ] {
        emu.inject_fault(Fault::status(401).for_operation(op));
    }
    let closed = wait_until(LIMIT, || errno_of(m.read("a")) == libc::EACCES);
    emu.clear_faults();
    assert!(
        closed,
        "still served while the vault refused every token:\n{}",
        m.log()
    );
    assert!(is_mounted(&m.path));
}

#[test]
fn one_vault_401_is_retried_with_a_new_token() {
    let emu = emulator_with(&[("a", "one"), ("b", "two")]);
    let m = Mount::with_env(&emu, &sp_env(&emu), &["--auth", "client-secret"]);
    assert_eq!(m.read("a").unwrap(), b"one");
    let tokens = emu.counts().get("token_client_secret");
    // The SDK answers a 401 by re-sending once with its cached token; the
    // second 401 makes akvfs ask for a new token and try once more.
    emu.inject_fault(
        Fault::status(401)
            .for_operation(akvfs_emulator::Operation::GetSecret)
            .times(2),
    );
    assert_eq!(m.read("b").unwrap(), b"two");
    assert!(
        emu.counts().get("token_client_secret") > tokens,
        "no new token was requested: {:?}\n{}",
        emu.counts(),
        m.log()
    );
    assert_eq!(m.read("a").unwrap(), b"one");
}

#[test]
fn a_challenge_for_another_resource_gets_no_token() {
    let emu = emulator_with(&[("a", "one"), ("b", "two")]);
    let m = Mount::new(&emu, &[]);
    assert_eq!(m.read("a").unwrap(), b"one");
    emu.reset_counts();
    emu.inject_fault(
        Fault::challenge("https://management.azure.com")
            .for_operation(akvfs_emulator::Operation::GetSecret)
            .times(1),
    );
    assert_eq!(errno_of(m.read("b")), libc::EACCES);
    let counts = emu.counts();
    assert_eq!(
        counts.get("invalid_token"),
        0,
        "a token for another resource reached the vault"
    );
    let named = wait_until(LIMIT, || {
        let log = m.log();
        log.contains("https://management.azure.com/.default")
            && log.contains("vault host 127.0.0.1")
    });
    assert!(named, "the error names the host and the scope: {}", m.log());
    // The refused scope is not kept: the next request starts over with
    // Key Vault's own challenge.
    let recovered = wait_until(LIMIT, || m.read("b").ok().as_deref() == Some(&b"two"[..]));
    assert!(recovered, "{}", m.log());
}

#[test]
fn a_ten_megabyte_answer_is_an_error() {
    let emu = emulator_with(&[("a", "one"), ("b", "two")]);
    let m = Mount::new(&emu, &[]);
    assert_eq!(m.read("a").unwrap(), b"one");
    emu.inject_fault(
        Fault::oversized(10 << 20)
            .for_operation(akvfs_emulator::Operation::GetSecret)
            .times(1),
    );
    assert_eq!(errno_of(m.read("b")), libc::EIO);
    // The warning is written by the daemon after it answers the read.
    let logged = wait_until(LIMIT, || m.log().contains("larger than"));
    assert!(logged, "{}", m.log());
    assert!(is_mounted(&m.path));
    let recovered = wait_until(LIMIT, || m.read("b").ok().as_deref() == Some(&b"two"[..]));
    assert!(recovered, "{}", m.log());
}

#[test]
fn the_client_secret_leaves_the_environment() {
    let emu = emulator_with(&[("a", "one")]);
    let m = Mount::with_env(&emu, &sp_env(&emu), &["--auth", "client-secret"]);
    assert_eq!(m.read("a").unwrap(), b"one");
    let environ = std::fs::read(format!("/proc/{}/environ", m.pid())).unwrap();
    let secret = emu.info().client_secret.as_bytes();
    assert!(
        !environ.windows(secret.len()).any(|w| w == secret),
        "the client secret is still in /proc/PID/environ"
    );
    assert!(
        !environ
            .split(|b| *b == 0)
            .any(|v| v.starts_with(b"AZURE_CLIENT_SECRET=")
                && v.len() > 20
                && !v[20..].iter().all(|b| *b == b'x')),
        "AZURE_CLIENT_SECRET still holds a value"
    );
}

#[test]
fn values_with_json_escapes_read_back_exactly() {
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
    let odd = "quote \" backslash \\ slash / tab \t cr \r bell \u{7} é 漢字 🎉 \u{2028}";
    let emu = emulator_with(&[("pem", pem), ("odd", odd)]);
    let m = Mount::new(&emu, &[]);
    assert_eq!(m.read("pem").unwrap(), pem.as_bytes());
    assert_eq!(m.read("odd").unwrap(), odd.as_bytes());
}
