//! Bad input: each gets one actionable line and a non-zero exit, and nothing
//! panics.

mod common;

use std::process::Command;

use common::*;

fn assert_clean_failure(out: &Finished, code: i32, must_contain: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", out.stderr);
    let line = out.error_line();
    assert!(
        line.starts_with("akvfs: error: "),
        "last line: {line:?}\n{}",
        out.stderr
    );
    for s in must_contain {
        assert!(line.contains(s), "{line:?} should mention {s:?}");
    }
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"));
}

fn mount_cmd(env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = akvfs(env);
    cmd.arg("mount").args(args);
    cmd
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, hint) in [
        (vec!["myvault", d, "--file-mode", "999"], "octal"),
        (vec!["myvault", d, "--cache-bytes", "lots"], "size"),
        (vec!["myvault", d, "--auth", "magic"], "magic"),
        (vec!["myvault", d, "--fetch-timeout", "0s"], "fetch-timeout"),
        (vec!["myvault", d, "--bogus"], "--bogus"),
        (vec!["myvault"], "MOUNTPOINT"),
    ] {
        let out = run(mount_cmd(&[], &args));
        assert_clean_failure(&out, 2, &[hint]);
    }
}

/// `akvfs check` takes a mount's own flags, so its line can be checked
/// unchanged, and validates them all: a bad mount-only value is a usage
/// error there too, not silently ignored.
#[test]
fn check_validates_the_mount_flags_it_accepts() {
    for (args, hint) in [
        (vec!["myvault", "--cache-bytes", "lots"], "--cache-bytes"),
        (vec!["myvault", "--max-stale", "soon"], "--max-stale"),
        (vec!["myvault", "--file-mode", "999"], "octal"),
    ] {
        let mut cmd = akvfs(&[]);
        cmd.arg("check").args(&args);
        assert_clean_failure(&run(cmd), 2, &[hint]);
    }
}

#[test]
fn bad_vault_names_and_urls_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for bad in [
        "my_vault",
        "x",
        "http://kv.vault.azure.net",
        "https://kv.vault.azure.net/secrets/a",
    ] {
        let out = run(mount_cmd(&[], &[bad, d]));
        assert_clean_failure(&out, 2, &[]);
        assert!(
            out.error_line().contains(bad) || out.error_line().contains("https"),
            "{}",
            out.error_line()
        );
    }
}

#[test]
fn an_unreachable_vault_fails_with_what_to_check() {
    let emu = emulator_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = run(mount_cmd(
        &wi_env(&emu),
        &[
            "https://127.0.0.1:9",
            dir.path().to_str().unwrap(),
            "--foreground",
            "--fetch-timeout",
            "1s",
            "--ca-file",
            &emu.info().ca_file,
            "--disable-challenge-resource-verification",
        ],
    ));
    assert_clean_failure(&out, 1, &["https://127.0.0.1:9", "check"]);
    assert!(!is_mounted(dir.path()));
}

#[test]
fn a_wrong_ca_fails_with_what_to_check() {
    let emu = emulator_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = run(mount_cmd(
        &wi_env(&emu),
        &[
            &emu.info().vault_url,
            dir.path().to_str().unwrap(),
            "--foreground",
            "--fetch-timeout",
            "1s",
            "--disable-challenge-resource-verification",
        ],
    ));
    assert_clean_failure(&out, 1, &["--ca-file"]);
}

#[test]
fn a_ca_file_that_is_not_pem_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let out = run(mount_cmd(
        &[],
        &[
            "myvault",
            mnt.to_str().unwrap(),
            "--foreground",
            "--ca-file",
            ca.to_str().unwrap(),
        ],
    ));
    assert_clean_failure(&out, 1, &["--ca-file"]);
}

#[test]
fn missing_environment_for_the_chosen_auth_is_named() {
    let emu = emulator_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let url = emu.info().vault_url.clone();
    // (Managed identity without IDENTITY_ENDPOINT means the instance metadata
    // service, which must not be probed from a test machine.)
    let cases: [(&str, &[&str]); 3] = [
        ("workload-identity", &["AZURE_FEDERATED_TOKEN_FILE"]),
        ("client-secret", &["AZURE_CLIENT_SECRET"]),
        ("azure-cli", &["az login"]),
    ];
    for (mode, names) in cases {
        let mut args = vec![
            url.as_str(),
            d,
            "--foreground",
            "--auth",
            mode,
            "--fetch-timeout",
            "1s",
        ];
        let ca = emu.info().ca_file.clone();
        args.extend([
            "--ca-file",
            ca.as_str(),
            "--disable-challenge-resource-verification",
        ]);
        let out = run(mount_cmd(&[], &args));
        assert_clean_failure(&out, 1, names);
    }
}

#[test]
fn an_identity_that_cannot_authenticate_is_reported() {
    let emu = emulator_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut env = wi_env(&emu);
    for (k, v) in env.iter_mut() {
        if k == "AZURE_CLIENT_ID" {
            *v = "00000000-0000-0000-0000-00000000dead".into();
        }
    }
    let mut args = vec![
        emu.info().vault_url.clone(),
        dir.path().to_str().unwrap().to_string(),
        "--foreground".into(),
    ];
    args.extend(conn_args(&emu));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = run(mount_cmd(&env, &args));
    assert_clean_failure(&out, 1, &["authenticate"]);
}

#[test]
fn bad_mountpoints_are_named() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let missing = dir.path().join("missing");
    let base: Vec<String> = conn_args(&emu);
    for (target, hint) in [(&missing, "does not exist"), (&file, "not a directory")] {
        let mut args = vec![
            emu.info().vault_url.clone(),
            target.to_str().unwrap().to_string(),
            "--foreground".into(),
        ];
        args.extend(base.clone());
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(mount_cmd(&wi_env(&emu), &args));
        assert_clean_failure(&out, 1, &[hint]);
    }
    // A mount already served by a live akvfs.
    let m = Mount::new(&emu, &[]);
    let mut args = vec![
        emu.info().vault_url.clone(),
        m.path.to_str().unwrap().to_string(),
        "--foreground".into(),
    ];
    args.extend(base);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = run(mount_cmd(&wi_env(&emu), &args));
    assert_clean_failure(&out, 1, &["already", "akvfs unmount"]);
    assert_eq!(m.read("a").unwrap(), b"1", "the live mount is untouched");
}

#[test]
fn unmount_of_something_not_mounted_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = akvfs(&[]);
        c.arg("unmount").arg(dir.path());
        c
    });
    assert_clean_failure(&out, 1, &["not a mount point"]);
}

#[test]
fn help_groups_flags_and_states_defaults() {
    let out = run({
        let mut c = akvfs(&[]);
        c.args(["mount", "--help"]);
        c
    });
    assert!(out.status.success());
    for s in [
        "Authentication:",
        "Connection:",
        "Mount:",
        "Cache:",
        "Security:",
        "[default: auto]",
        "[default: 0400]",
        "[default: 64MiB]",
    ] {
        assert!(out.stdout.contains(s), "help lacks {s:?}:\n{}", out.stdout);
    }
}

#[test]
fn memory_that_cannot_be_locked_is_refused_with_advice() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // An unprivileged user with a locked-memory limit too small even for
    // the secret region (the usual 8 MiB is enough: tests/laptop.rs).
    let mut cmd = mount_cmd(
        &[],
        &["myvault", dir.path().to_str().unwrap(), "--foreground"],
    );
    cmd.uid(65534).gid(65534);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
            Ok(())
        });
    }
    let out = run(cmd);
    assert_clean_failure(&out, 1, &["cannot lock memory", "64 KiB", "--no-mlock"]);
}

/// `akvfs check` bounds each call by `--fetch-timeout`, the same setting
/// that bounds a mount's reads: a vault that accepts connections but never
/// answers makes it fail with what to check instead of hanging.
#[test]
fn check_gives_up_on_a_silent_vault_after_the_fetch_timeout() {
    let emu = emulator_with(&[]);
    // Connections complete in the kernel's backlog; nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let mut cmd = akvfs(&wi_env(&emu));
    let ca = emu.info().ca_file.clone();
    cmd.args([
        "check",
        &url,
        "--fetch-timeout",
        "1s",
        "--ca-file",
        ca.as_str(),
    ]);
    cmd.arg("--disable-challenge-resource-verification");
    let out = run(cmd);
    assert_clean_failure(&out, 1, &["did not answer in time", &url]);
}
