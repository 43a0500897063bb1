//! Property tests for every hand-written parser: durations and sizes, `-o`
//! mount options, mountinfo unescaping, the config file, the SecretBundle
//! body and the JSON unescaping of values, token endpoint answers, and the
//! metrics endpoint's request handling.
//!
//! Each parser must answer arbitrary input with a value or an error, never a
//! panic, and must round-trip what it is meant to read. Case counts are
//! bounded so the whole file runs in seconds.

use std::io::{Read, Write};
use std::time::Duration;

use proptest::prelude::*;

use akvfs::parse_secret_bundle;
use akvfs::unescape_json_string;
use akvfs::unescape_mountinfo as unescape;
use akvfs::{classify_token_answer, is_key_vault_scope, TokenFailure, KEY_VAULT_SCOPES};
use akvfs::{load_config_file, parse_duration, parse_mode, parse_mount_options, parse_size};

/// The name the bodies below answer for.
fn name() -> akvfs::sim::SecretName {
    akvfs::sim::SecretName::parse("name").unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_never_panic(s in "\\PC{0,24}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn durations_read_what_they_say(n in 0u64..100_000, unit in prop::sample::select(vec!["ms", "s", "", "m", "min", "h"])) {
        let secs = match unit {
            "ms" => n as f64 / 1000.0,
            "" | "s" => n as f64,
            "m" | "min" => n as f64 * 60.0,
            _ => n as f64 * 3600.0,
        };
        let got = parse_duration(&format!("{n}{unit}"));
        if secs <= 365.0 * 86400.0 {
            prop_assert_eq!(got.unwrap(), Duration::from_secs_f64(secs));
        } else {
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn sizes_never_panic(s in "\\PC{0,24}") {
        let _ = parse_size(&s);
    }

    #[test]
    fn sizes_read_what_they_say(n in any::<u64>(), unit in prop::sample::select(vec![("", 1u64), ("B", 1), ("k", 1 << 10), ("KiB", 1 << 10), ("MiB", 1 << 20), ("mb", 1 << 20), ("G", 1 << 30), ("GiB", 1 << 30)])) {
        let got = parse_size(&format!("{n}{}", unit.0));
        match n.checked_mul(unit.1) {
            Some(v) => prop_assert_eq!(got.unwrap(), v),
            None => prop_assert!(got.is_err()),
        }
    }

    #[test]
    fn modes_never_panic_and_refuse_special_bits(s in "[0-7o]{0,7}|\\PC{0,8}") {
        if let Ok(m) = parse_mode(&s) {
            prop_assert!(m <= 0o777);
        }
    }

    #[test]
    fn mount_options_never_panic(s in "\\PC{0,80}") {
        let _ = parse_mount_options(&s);
    }

    #[test]
    fn mount_options_carry_their_values(
        uid in any::<u32>(),
        gid in any::<u32>(),
        mode in 0u16..0o1000,
        allow_other in any::<bool>(),
        interval in 1u32..10_000,
        ignored in prop::sample::subsequence(vec!["defaults", "_netdev", "nofail", "x-systemd.automount", "ro", "noatime"], 0..4),
    ) {
        let mut opts: Vec<String> = ignored.iter().map(|s| s.to_string()).collect();
        opts.push(format!("uid={uid}"));
        opts.push(format!("gid={gid}"));
        opts.push(format!("file_mode={mode:04o}"));
        opts.push(format!("allow_other={allow_other}"));
        opts.push(format!("refresh_interval={interval}s"));
        opts.push("no_mlock".into());
        let (raw, mlock) = parse_mount_options(&opts.join(",")).unwrap();
        prop_assert!(!mlock);
        prop_assert_eq!(raw.uid, Some(uid));
        prop_assert_eq!(raw.gid, Some(gid));
        prop_assert_eq!(raw.allow_other, Some(allow_other));
        let file_mode = raw.file_mode.clone().unwrap();
        prop_assert_eq!(parse_mode(&file_mode).unwrap(), mode);
        let refresh = raw.refresh_interval.clone().unwrap();
        prop_assert_eq!(parse_duration(&refresh).unwrap(), Duration::from_secs(interval as u64));
    }

    #[test]
    fn mountinfo_unescaping_inverts_the_kernels_escaping(path in "\\PC{0,40}") {
        // The kernel writes space, tab, newline and backslash as \ooo.
        let mut escaped = String::new();
        for c in path.chars() {
            match c {
                ' ' | '\t' | '\n' | '\\' => escaped.push_str(&format!("\\{:03o}", c as u32)),
                c => escaped.push(c),
            }
        }
        prop_assert_eq!(unescape(&escaped), path);
    }

    #[test]
    fn mountinfo_unescaping_never_panics(s in "(\\\\[0-9]{0,3}|\\PC){0,30}") {
        let _ = unescape(&s);
    }

    #[test]
    fn json_unescaping_matches_serde_json_on_any_string(s in "\\PC{0,64}|[\\x00-\\x7f]{0,64}") {
        let raw = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(&unescape_json_string(&raw).unwrap()[..], s.as_bytes());
    }

    #[test]
    fn json_unescaping_agrees_with_serde_json_on_any_literal(body in "(\\\\(u[0-9a-fA-F]{0,4}|[\"\\\\/bfnrtx])|[a-z\"]|\\PC){0,24}") {
        let raw = format!("\"{body}\"");
        let ours = unescape_json_string(&raw);
        match serde_json::from_str::<String>(&raw) {
            Ok(v) => prop_assert_eq!(ours.as_deref().map(|b| &b[..]), Some(v.as_bytes())),
            Err(_) => prop_assert!(ours.is_none(), "accepted {:?}", raw),
        }
    }

    #[test]
    fn secret_bundles_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_secret_bundle(&body, &name());
    }

    #[test]
    fn secret_bundles_never_panic_on_json_like_input(body in "[{}\\[\\]\":,a-z0-9\\\\ ]{0,128}") {
        let _ = parse_secret_bundle(body.as_bytes(), &name());
    }

    #[test]
    fn secret_bundles_round_trip(
        value in "\\PC{0,200}",
        version in "[0-9a-f]{32}",
        content_type in proptest::option::of("\\PC{0,20}"),
        enabled in any::<bool>(),
        updated in any::<i64>(),
        tags in prop::collection::btree_map("[a-z]{1,8}", "\\PC{0,16}", 0..4),
    ) {
        let id = format!("https://v.vault.azure.net/secrets/name/{version}");
        let body = serde_json::json!({
            "value": value,
            "id": id,
            "contentType": content_type,
            "attributes": {"enabled": enabled, "updated": updated},
            "tags": tags,
        });
        let parsed = parse_secret_bundle(&serde_json::to_vec(&body).unwrap(), &name()).unwrap();
        prop_assert_eq!(&parsed.value[..], value.as_bytes());
        prop_assert_eq!(parsed.props.version.as_str(), version.as_str());
        prop_assert_eq!(parsed.props.id, id);
        prop_assert_eq!(parsed.props.content_type, content_type);
        prop_assert_eq!(parsed.props.enabled, enabled);
        prop_assert_eq!(parsed.props.updated, Some(updated));
        prop_assert_eq!(parsed.props.tags, tags);
    }

    #[test]
    fn token_answers_never_panic(status in 100u16..600, body in "\\PC{0,120}") {
        let _ = classify_token_answer(status, &body, String::new());
    }

    #[test]
    fn token_outages_are_transient_whatever_the_body(status in prop::sample::select(vec![408u16, 429, 500, 502, 503, 504]), body in "\\PC{0,60}") {
        prop_assert!(matches!(classify_token_answer(status, &body, String::new()), TokenFailure::Transient(_)));
    }

    #[test]
    fn only_key_vault_scopes_are_allowed(scope in "\\PC{0,60}") {
        if is_key_vault_scope(&scope) {
            let lower = scope.to_ascii_lowercase();
            prop_assert!(KEY_VAULT_SCOPES.iter().any(|s| lower == *s || lower == s.replace("/.default", "//.default")), "{}", scope);
        }
    }
}

#[test]
fn token_answers_are_classified() {
    let refused = [
        (401, r#"{"error":"invalid_client","error_codes":[7000215]}"#),
        (
            400,
            r#"{"error":"unauthorized_client","error_codes":[700016]}"#,
        ),
        (400, r#"{"error":"invalid_grant","error_codes":[70000]}"#),
        (400, r#"{"error":"invalid_request","error_codes":[53003]}"#),
        (
            400,
            r#"{"statusCode":400,"message":"No User Assigned or Delegated Managed Identity found for specified ClientId."}"#,
        ),
        (
            400,
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
        ),
    ];
    for (status, body) in refused {
        assert!(
            matches!(
                classify_token_answer(status, body, String::new()),
                TokenFailure::Refused(_)
            ),
            "{status} {body}"
        );
    }
    let other = [
        (400, r#"{"error":"invalid_scope","error_codes":[1002012]}"#),
        (400, r#"{"error":"invalid_request","error_codes":[900144]}"#),
        (400, "not json"),
        (404, r#"{"error":"invalid_client"}"#),
    ];
    for (status, body) in other {
        assert!(
            matches!(
                classify_token_answer(status, body, String::new()),
                TokenFailure::Other(_)
            ),
            "{status} {body}"
        );
    }
    assert!(matches!(
        classify_token_answer(400, r#"{"error":"temporarily_unavailable"}"#, String::new()),
        TokenFailure::Transient(_)
    ));
}

#[test]
fn key_vault_scopes() {
    for ok in KEY_VAULT_SCOPES {
        assert!(is_key_vault_scope(ok), "{ok}");
    }
    assert!(is_key_vault_scope("https://VAULT.azure.net/.default"));
    assert!(is_key_vault_scope("https://vault.azure.net//.default"));
    for bad in [
        "https://management.azure.com/.default",
        "https://graph.microsoft.com/.default",
        "https://vault.azure.net.evil.example/.default",
        "https://evil.example/vault.azure.net/.default",
        "http://vault.azure.net/.default",
        "https://vault.azure.net",
        "https://storage.azure.com/.default",
        "",
    ] {
        assert!(!is_key_vault_scope(bad), "{bad}");
    }
}

/// Writes `text` to a fresh config file and loads it.
fn load(text: &str) -> Result<akvfs::ConfigFile, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    load_config_file(&path).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_files_never_panic(text in "(\\[\\[mount\\]\\]\n|\\[defaults\\]\n|[a-z_]{1,12} = (\"\\PC{0,12}\"|[0-9]{1,4}|true)\n|\\PC{0,20}\n){0,8}") {
        let _ = load(&text);
    }

    #[test]
    fn config_files_carry_their_values(
        gid in any::<u32>(),
        mode in 0u16..0o1000,
        interval in 1u32..600,
        cache_mib in 1u64..1024,
        allow_other in any::<bool>(),
    ) {
        let text = format!(
            "mlock = false\n[defaults]\nauth = \"managed-identity\"\nallow_other = {allow_other}\n\
             [[mount]]\nvault = \"myvault\"\npath = \"/tmp/akvfs-prop\"\ngid = {gid}\n\
             file_mode = \"{mode:04o}\"\nrefresh_interval = \"{interval}s\"\ncache_bytes = \"{cache_mib}MiB\"\n"
        );
        let cfg = load(&text).unwrap();
        prop_assert_eq!(cfg.mounts.len(), 1);
        let shown = format!("{:?}", cfg.mounts[0]);
        prop_assert!(shown.contains(&gid.to_string()), "{}", shown);
    }
}

/// The shipped defaults (packaged config, Kubernetes base) serve root only:
/// no `allow_other`, and no group or other read bits, so no process in group
/// 0 can read what the node mounts. Overlays widen it for one group.
#[test]
fn shipped_defaults_are_root_only() {
    let root = env!("CARGO_MANIFEST_DIR");
    let packaged = std::fs::read_to_string(format!("{root}/packaging/config.toml")).unwrap();
    let yaml = std::fs::read_to_string(format!("{root}/k8s/base/configmap.yaml")).unwrap();
    for (name, text) in [
        ("packaging/config.toml", packaged),
        ("k8s/base/configmap.yaml", configmap_toml(&yaml)),
    ] {
        for m in load(&text).unwrap().mounts {
            assert!(!m.owner.allow_other, "{name}: allow_other by default");
            assert_eq!(
                m.owner.file_mode & 0o077,
                0,
                "{name}: file_mode {:o}",
                m.owner.file_mode
            );
            assert_eq!(
                m.owner.dir_mode & 0o077,
                0,
                "{name}: dir_mode {:o}",
                m.owner.dir_mode
            );
        }
    }
}

fn configmap_toml(yaml: &str) -> String {
    yaml.split_once("config.toml: |\n")
        .unwrap()
        .1
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The configs shipped in packaging/ and k8s/ load as they are.
#[test]
fn shipped_configs_load() {
    let root = env!("CARGO_MANIFEST_DIR");
    let packaged = std::fs::read_to_string(format!("{root}/packaging/config.toml")).unwrap();
    load(&packaged).unwrap();
    for manifest in [
        "k8s/base/configmap.yaml",
        "k8s/overlays/example/configmap-patch.yaml",
    ] {
        let yaml = std::fs::read_to_string(format!("{root}/{manifest}")).unwrap();
        load(&configmap_toml(&yaml)).unwrap_or_else(|e| panic!("{manifest}: {e}"));
    }
}

/// The metrics endpoint answers any request bytes with at most one
/// well-formed response and closes: GET of its three paths is served, other
/// methods get 405, a malformed head 400 and one over 8 KiB 431; a request
/// cut short before its head ends is closed without an answer, and so is a
/// client that sends nothing.
#[test]
fn metrics_requests() {
    // A worker thread runs the server while this thread makes requests.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let registry = std::sync::Arc::new(akvfs::Registry::default());
    rt.block_on(akvfs::serve_metrics(addr, registry, stop))
        .unwrap();
    let ask = |request: &[u8]| -> String {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.write_all(request).unwrap();
        let _ = conn.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        conn.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let status = |resp: &str| resp.split_whitespace().nth(1).unwrap_or("").to_string();
    assert_eq!(status(&ask(b"GET /healthz HTTP/1.1\r\n\r\n")), "200");
    assert_eq!(status(&ask(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n")), "200");
    assert_eq!(status(&ask(b"GET /other HTTP/1.1\r\n\r\n")), "404");
    assert_eq!(status(&ask(b"POST /metrics HTTP/1.1\r\n\r\n")), "405");
    assert_eq!(status(&ask(&[b'A'; 20_000])), "431");
    // Scrapers of the Prometheus text format get it; Prometheus, which asks
    // for OpenMetrics, gets that.
    let plain = ask(b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(
        plain.contains("Content-Type: text/plain; version=0.0.4"),
        "{plain}"
    );
    assert!(
        plain.contains("# TYPE akvfs_lookups_total counter"),
        "{plain}"
    );
    let open = ask(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n");
    assert!(
        open.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{open}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    // A client that sends nothing is cut off, and does not hold up others.
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(status(&ask(b"GET /readyz HTTP/1.1\r\n\r\n")), "503");
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            "(GET|POST|HEAD|get) (/metrics|/healthz|/readyz|/|\\PC{0,20})( HTTP/1\\.[01])?(\r\n[A-Za-z-]{1,10}: \\PC{0,20}){0,3}(\r\n\r\n)?"
                .prop_map(String::into_bytes),
            Just(vec![b'A'; 20_000]),
        ],
        |request| {
            let resp = ask(&request);
            if resp.is_empty() {
                prop_assert!(!request.ends_with(b"\r\n\r\n"), "a whole head is answered");
                return Ok(());
            }
            // HTTP/1.0 requests are answered in HTTP/1.0.
            prop_assert!(resp.starts_with("HTTP/1."), "{:?}", resp);
            prop_assert!(
                ["200", "400", "404", "405", "431", "503"].contains(&status(&resp).as_str()),
                "{:?}",
                resp
            );
            let (head, body) = resp.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            if request.starts_with(b"HEAD ") {
                // The answer to HEAD has the length of a GET's body, not the body.
                prop_assert!(body.is_empty(), "{:?}", resp);
            } else {
                prop_assert_eq!(body.len(), len);
            }
            Ok(())
        },
    );
    result.unwrap();
    drop(rt);
}
