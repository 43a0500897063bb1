//! The VM path as Azure runs it: managed identity through the Instance
//! Metadata Service at 169.254.169.254, with no identity variables at all.
//!
//! Each test creates its own network namespace in which 169.254.169.254 sits
//! on the loopback interface. The emulator's sockets (the vault over HTTPS on
//! 127.0.0.1, IMDS over HTTP on 169.254.169.254:80) are opened from a thread
//! that entered the namespace, and akvfs runs there through `nsenter --net`,
//! so it shares the test's mount namespace (its FUSE mount is visible here)
//! but no network with the machine: no traffic leaves it.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use akvfs_emulator::{Identity, Operation, Permissions};
use common::*;

const IMDS_ADDR: &str = "169.254.169.254";
const ARC_PORT: u16 = 40342;
const USER_ASSIGNED: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// A network namespace with loopback up and 169.254.169.254 on it; removed on drop.
struct NetNs {
    name: String,
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("ip runs (package iproute2)");
    assert!(st.success(), "ip {args:?} failed");
}

impl NetNs {
    fn new() -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "akvfs-imds-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{IMDS_ADDR}/32"),
            "dev",
            "lo",
        ]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs `f` on a thread that has entered the namespace; threads it
    /// starts stay there.
    fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("namespace file");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in the namespace")
    }

    /// An akvfs command that runs inside the namespace (network only).
    fn akvfs(&self, env: &[(String, String)]) -> Command {
        let cmd = akvfs(env);
        let program = cmd.get_program().to_owned();
        let mut wrapped = Command::new("/usr/bin/nsenter");
        wrapped.arg(format!("--net={}", self.path().display()));
        wrapped.arg("--").arg(program);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        wrapped
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An emulator listening inside `ns`, with IMDS on 169.254.169.254:80 and
/// a second managed identity (user-assigned) that can read everything.
fn emulator_in(
    ns: &NetNs,
    secrets: &[(&str, &str)],
    tweak: impl FnOnce(&mut EmulatorConfig),
) -> Emulator {
    let mut cfg = EmulatorConfig {
        imds_listen: Some(format!("{IMDS_ADDR}:80").parse().expect("address")),
        arc_listen: Some(format!("127.0.0.1:{ARC_PORT}").parse().expect("address")),
        ..Default::default()
    };
    tweak(&mut cfg);
    let emu = ns.run_inside(move || Emulator::spawn(cfg).expect("emulator starts"));
    let mut uai = Identity::new(USER_ASSIGNED);
    uai.managed_identity = true;
    uai.permissions = Permissions::read_only();
    emu.inner().add_identity(uai).expect("identity added");
    for (name, value) in secrets {
        emu.set_secret(name, value);
    }
    emu.reset_counts();
    emu
}

/// No identity variables at all, as on a VM (the CA comes as a flag).
fn no_identity_env() -> Vec<(String, String)> {
    Vec::new()
}

fn imds_tokens(emu: &Emulator) -> u64 {
    emu.counts().op(Operation::TokenManagedIdentity)
}

fn mount_in(ns: &NetNs, emu: &Emulator, env: &[(String, String)], extra: &[&str]) -> Mount {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mnt");
    std::fs::create_dir(&path).expect("mountpoint");
    let mut cmd = ns.akvfs(env);
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(&path)
        .arg("--foreground")
        .args(conn_args(emu))
        .args(extra);
    Mount::from_command(cmd, &path, Some(dir))
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
}

#[test]
fn system_assigned_identity_through_imds_with_no_identity_environment() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("db-password", "vm-secret")], |_| {});
    let m = mount_in(
        &ns,
        &emu,
        &no_identity_env(),
        &["--auth", "managed-identity"],
    );
    assert_eq!(m.read("db-password").unwrap(), b"vm-secret");
    assert!(imds_tokens(&emu) >= 1, "the token came from IMDS");
    assert!(m.log().contains("managed-identity"), "{}", m.log());
}

#[test]
fn user_assigned_identity_by_client_id() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("shared", "s"), ("uai-only", "u")], |_| {});
    // The system-assigned identity may not read uai-only; the user-assigned one may.
    emu.deny_secret(&emu.info().client_id, "uai-only");
    let sys = mount_in(
        &ns,
        &emu,
        &no_identity_env(),
        &["--auth", "managed-identity"],
    );
    assert_eq!(sys.read("shared").unwrap(), b"s");
    assert_eq!(errno_of(sys.read("uai-only")), libc::EACCES);
    drop(sys);
    let uai = mount_in(
        &ns,
        &emu,
        &no_identity_env(),
        &["--auth", "managed-identity", "--client-id", USER_ASSIGNED],
    );
    assert_eq!(uai.read("uai-only").unwrap(), b"u");
    assert_eq!(uai.read("shared").unwrap(), b"s");
}

/// packaging/config.toml, changed only in the vault URL, the CA and the path
/// (and challenge verification, since the emulator's host is an IP address).
fn shipped_config(emu: &Emulator, mountpoint: &Path, client_id: Option<&str>) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/config.toml"
    ))
    .expect("packaging/config.toml");
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.trim() {
            "vault = \"myvault\"" => format!(
                "vault = \"{}\"\nca_file = \"{}\"\ndisable_challenge_resource_verification = true",
                emu.info().vault_url,
                emu.info().ca_file
            ),
            "path = \"/var/lib/akvfs/myvault\"" => format!("path = \"{}\"", mountpoint.display()),
            "#client_id = \"00000000-0000-0000-0000-000000000000\"" => match client_id {
                Some(id) => format!("client_id = \"{id}\""),
                None => line.to_string(),
            },
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    // Mount points in the sample config are fixed; the test's must be private.
    assert!(out.contains(&mountpoint.display().to_string()));
    out
}

#[test]
fn run_with_the_shipped_config_serves_through_imds_system_and_user_assigned() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("a", "from-config")], |_| {});
    for client_id in [None, Some(USER_ASSIGNED)] {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("myvault");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, shipped_config(&emu, &mountpoint, client_id)).unwrap();
        emu.reset_counts();
        let mut cmd = ns.akvfs(&no_identity_env());
        cmd.arg("run").arg("--config").arg(&config);
        let mut svc = Mount::from_command(cmd, &mountpoint, None);
        assert_eq!(svc.read("a").unwrap(), b"from-config", "{}", svc.log());
        assert!(imds_tokens(&emu) >= 1);
        svc.stop_with(libc::SIGTERM);
        drop(svc);
        drop(dir);
    }
}

fn fake_sysfs(tag: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dmi = root.path().join("class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("chassis_asset_tag"), format!("{tag}\n")).unwrap();
    root
}

#[test]
fn auto_picks_managed_identity_on_a_machine_that_looks_like_azure() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("a", "auto")], |_| {});
    let azure = fake_sysfs(AZURE_ASSET_TAG);
    let env = vec![(
        "AKVFS_SYSFS_ROOT".to_string(),
        azure.path().display().to_string(),
    )];
    let m = mount_in(&ns, &emu, &env, &[]);
    assert_eq!(m.read("a").unwrap(), b"auto");
    assert!(
        m.log().contains("managed-identity") && m.log().contains("Azure VM"),
        "{}",
        m.log()
    );
    drop(m);
    // Another chassis: auto falls through to the Azure CLI, which is absent.
    let other = fake_sysfs("No Asset Tag");
    let bin = tempfile::tempdir().unwrap();
    let mut cmd = ns.akvfs(&[
        (
            "AKVFS_SYSFS_ROOT".to_string(),
            other.path().display().to_string(),
        ),
        ("PATH".to_string(), bin.path().display().to_string()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    cmd.arg("check")
        .arg(&emu.info().vault_url)
        .args(conn_args(&emu));
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("azure-cli") || out.stdout.contains("azure-cli"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    drop(dir);
}

#[test]
fn tokens_are_refreshed_before_they_expire() {
    let ns = NetNs::new();
    // The SDK renews 300 s before expiry: a 303 s token is due for renewal
    // after 3 s, while it is still valid for five more minutes.
    let emu = emulator_in(&ns, &[("a", "1"), ("b", "2")], |c| {
        c.token_lifetime = Duration::from_secs(303);
    });
    let m = mount_in(
        &ns,
        &emu,
        &no_identity_env(),
        &["--auth", "managed-identity"],
    );
    assert_eq!(m.read("a").unwrap(), b"1");
    let before = imds_tokens(&emu);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(m.read("b").unwrap(), b"2");
    assert!(
        imds_tokens(&emu) > before,
        "a new token was fetched before the old one expired"
    );
    assert_eq!(
        emu.counts().get("invalid_token"),
        0,
        "the vault never saw an expired token"
    );
}

/// A mount with one secret cached, ready for IMDS to fail.
fn cached_mount(ns: &NetNs, emu: &Emulator) -> Mount {
    let m = mount_in(
        ns,
        emu,
        &no_identity_env(),
        &["--auth", "managed-identity", "--fetch-timeout", "2s"],
    );
    assert_eq!(m.read("cached").unwrap(), b"c");
    m
}

/// Short-lived tokens, so every vault call asks IMDS first.
fn short_tokens(c: &mut EmulatorConfig) {
    c.token_lifetime = Duration::from_secs(60);
}

/// A cold read fails with EIO well inside the SDK's own IMDS retry budget
/// (72 s), so --fetch-timeout bounded it; the cached value keeps serving.
fn assert_fails_closed_and_keeps_cache(m: &Mount) -> String {
    let start = Instant::now();
    assert_eq!(errno_of(m.read("cold")), libc::EIO);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "failed instead of waiting for the SDK's retries"
    );
    assert_eq!(
        m.read("cached").unwrap(),
        b"c",
        "cached values keep serving"
    );
    m.log()
}

#[test]
fn imds_5xx_gives_an_error_within_the_fetch_timeout_and_keeps_cached_values() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("cached", "c"), ("cold", "d")], short_tokens);
    let m = cached_mount(&ns, &emu);
    emu.inject_fault(Fault::status(503).for_operation(Operation::TokenManagedIdentity));
    assert_fails_closed_and_keeps_cache(&m);
    // The warning is written as the error is answered; give the log a
    // moment to show it rather than race the reader.
    assert!(
        wait_until(Duration::from_secs(20), || m.log().contains("cold")),
        "the failure is logged:\n{}",
        m.log()
    );
    assert!(emu.counts().get("faulted") >= 1);
    emu.clear_faults();
    assert!(
        wait_until(Duration::from_secs(30), || m.read("cold").ok().as_deref()
            == Some(b"d")),
        "recovers"
    );
}

#[test]
fn a_hanging_imds_gives_an_error_within_the_fetch_timeout_and_keeps_cached_values() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("cached", "c"), ("cold", "d")], short_tokens);
    let m = cached_mount(&ns, &emu);
    emu.inject_fault(
        Fault::latency(Duration::from_secs(600)).for_operation(Operation::TokenManagedIdentity),
    );
    let log = assert_fails_closed_and_keeps_cache(&m);
    assert!(
        log.contains("instance metadata service") && log.contains("has not answered"),
        "the cause of the timeout is logged:\n{log}"
    );
}

#[test]
fn an_unreachable_imds_gives_an_error_within_the_fetch_timeout_and_keeps_cached_values() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("cached", "c"), ("cold", "d")], short_tokens);
    let m = cached_mount(&ns, &emu);
    // IMDS is gone from the network.
    ip(&[
        "-n",
        &ns.name,
        "addr",
        "del",
        &format!("{IMDS_ADDR}/32"),
        "dev",
        "lo",
    ]);
    assert_fails_closed_and_keeps_cache(&m);
    // The warning is written as the error is answered; give the log a
    // moment to show it rather than race the reader.
    assert!(
        wait_until(Duration::from_secs(20), || m.log().contains("cold")),
        "the failure is logged:\n{}",
        m.log()
    );
}

#[test]
fn an_identity_unknown_to_imds_is_a_clear_error() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("cached", "c"), ("cold", "d")], |c| {
        c.token_lifetime = Duration::from_secs(2);
    });
    // At start: a client id the VM does not have stops the mount with one line.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ns.akvfs(&no_identity_env());
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(dir.path())
        .arg("--foreground")
        .args(conn_args(&emu))
        .args([
            "--auth",
            "managed-identity",
            "--client-id",
            "99999999-9999-4999-8999-999999999999",
            "--fetch-timeout",
            "5s",
        ]);
    let out = run(cmd);
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("instance metadata service")
            && line.contains("99999999-9999-4999-8999-999999999999")
            && line.contains(&emu.info().vault_url),
        "{}",
        out.stderr
    );
    // While serving: the user-assigned identity is removed from the VM.
    let m = mount_in(
        &ns,
        &emu,
        &no_identity_env(),
        &[
            "--auth",
            "managed-identity",
            "--client-id",
            USER_ASSIGNED,
            "--fetch-timeout",
            "2s",
        ],
    );
    assert_eq!(m.read("cached").unwrap(), b"c");
    emu.inner().remove_identity(USER_ASSIGNED).expect("removed");
    // Once the token in hand has expired, IMDS must be asked again.
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    assert_ne!(errno_of(m.read("cold")), 0);
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(
        m.read("cached").unwrap(),
        b"c",
        "cached values keep serving"
    );
    let log = m.log();
    assert!(
        log.contains("instance metadata service") && log.contains("az vm identity assign"),
        "the cause is logged:\n{log}"
    );
}

#[test]
fn azure_arc_managed_identity() {
    let ns = NetNs::new();
    let keys = tempfile::tempdir().unwrap();
    let key_dir = keys.path().to_path_buf();
    let emu = emulator_in(&ns, &[("a", "arc")], move |c| {
        c.arc_key_dir = Some(key_dir);
    });
    let env = vec![
        (
            "IDENTITY_ENDPOINT".to_string(),
            emu.inner()
                .info()
                .arc_identity_endpoint
                .clone()
                .expect("arc served"),
        ),
        (
            "IMDS_ENDPOINT".to_string(),
            emu.inner()
                .info()
                .arc_imds_endpoint
                .clone()
                .expect("arc served"),
        ),
        (
            "AKVFS_ARC_TOKENS_DIR".to_string(),
            keys.path().display().to_string(),
        ),
    ];
    let m = mount_in(&ns, &emu, &env, &[]);
    assert_eq!(m.read("a").unwrap(), b"arc");
    assert!(imds_tokens(&emu) >= 2, "challenge, then the token");
    drop(m);
    // A key file outside the agent's directory is never read.
    let mut env = env;
    env.retain(|(k, _)| k != "AKVFS_ARC_TOKENS_DIR");
    let mut cmd = ns.akvfs(&env);
    cmd.arg("check")
        .arg(&emu.info().vault_url)
        .args(conn_args(&emu));
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(out.stderr.contains("refusing to read"), "{}", out.stderr);
}

/// The official Rust SDK's ManagedIdentityCredential gets tokens from the
/// emulator's IMDS, for the system-assigned identity and a user-assigned one
/// by client id, object id and resource id; a token for an identity IMDS does
/// not know is refused.
#[test]
fn rust_sdk_managed_identity_credential_conforms() {
    use azure_core::credentials::TokenCredential;
    use azure_identity::{
        ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    };
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[], |_| {});
    let mut user = Identity::new(USER_ASSIGNED);
    user.managed_identity = true;
    let object_id = user.oid();
    let resource_id = akvfs_emulator::imds::resource_id(&user);
    let ids = vec![
        (None, emu.info().client_id.clone()),
        (
            Some(UserAssignedId::ClientId(USER_ASSIGNED.into())),
            USER_ASSIGNED.to_string(),
        ),
        (
            Some(UserAssignedId::ObjectId(object_id)),
            USER_ASSIGNED.to_string(),
        ),
        (
            Some(UserAssignedId::ResourceId(resource_id)),
            USER_ASSIGNED.to_string(),
        ),
    ];
    let results = ns.run_inside(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut out = Vec::new();
            for (id, want) in ids {
                let cred = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: id,
                    ..Default::default()
                }))
                .expect("credential");
                let token = cred
                    .get_token(&["https://vault.azure.net/.default"], None)
                    .await
                    .map(|t| (t.token.secret().to_string(), t.expires_on));
                out.push((want, token.map_err(|e| e.to_string())));
            }
            let unknown = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: Some(UserAssignedId::ClientId("nobody".into())),
                ..Default::default()
            }))
            .expect("credential")
            .get_token(&["https://vault.azure.net/.default"], None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
            (out, unknown)
        })
    });
    let (tokens, unknown) = results;
    for (want, token) in tokens {
        let (jwt, expires_on) = token.expect("a token from IMDS");
        let claims = jwt_claims(&jwt);
        assert_eq!(claims["appid"], want.as_str());
        assert_eq!(claims["aud"], "https://vault.azure.net");
        assert_eq!(claims["exp"].as_i64(), Some(expires_on.unix_timestamp()));
    }
    let err = unknown.expect_err("unknown identity refused");
    assert!(
        err.contains("not been assigned") || err.contains("400"),
        "{err}"
    );
}

fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The SDK's IMDS retry handles 429 and 5xx: a few failures, then a token.
#[test]
fn rust_sdk_retries_imds_throttling_and_server_errors() {
    use azure_core::credentials::TokenCredential;
    use azure_identity::ManagedIdentityCredential;
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[], |_| {});
    emu.inject_fault(
        Fault::throttled(None)
            .for_operation(Operation::TokenManagedIdentity)
            .times(1),
    );
    emu.inject_fault(
        Fault::status(500)
            .for_operation(Operation::TokenManagedIdentity)
            .times(1),
    );
    let got = ns.run_inside(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            ManagedIdentityCredential::new(None)
                .expect("credential")
                .get_token(&["https://vault.azure.net/.default"], None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    got.expect("a token after the retries");
    assert_eq!(emu.counts().get("faulted"), 2);
    assert_eq!(imds_tokens(&emu), 1);
}

/// The README's VM line: `myvault /mnt/kv fuse.akvfs
/// allow_other,auth=managed-identity,_netdev 0 0`, through the mount helper,
/// with the emulator's vault URL and CA in place of the real vault's.
#[test]
fn the_fstab_line_mounts_through_imds() {
    let ns = NetNs::new();
    let emu = emulator_in(&ns, &[("a", "fstab")], |_| {});
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.fuse.akvfs");
    std::os::unix::fs::symlink(akvfs_bin(), &helper).unwrap();
    let mnt = dir.path().join("kv");
    std::fs::create_dir(&mnt).unwrap();
    let opts = format!(
        "allow_other,auth=managed-identity,_netdev,ca_file={},disable_challenge_resource_verification",
        emu.info().ca_file
    );
    let mut cmd = Command::new("/usr/bin/nsenter");
    cmd.arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(&helper)
        .arg(&emu.info().vault_url)
        .arg(&mnt)
        .arg("-o")
        .arg(&opts);
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE_") || k.starts_with("IDENTITY_") || k.starts_with("IMDS_") {
            cmd.env_remove(k);
        }
    }
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(is_mounted(&mnt));
    let read = std::fs::read(mnt.join("a"));
    let status = Command::new("umount").arg(&mnt).status().unwrap();
    assert_eq!(read.unwrap(), b"fstab");
    assert!(status.success());
    assert!(imds_tokens(&emu) >= 1);
}
