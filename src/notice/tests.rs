//! Notices without a node: the window and delays, parsing hostile content, the source setting, counting changes.

use std::collections::BTreeMap;

use super::*;

#[test]
fn window_follows_the_formula() {
    // The planned mean per 10 s: m + 3 sqrt(m) <= 40% of the limit.
    assert_eq!(window::planned_per_10s(4000), 1482);
    assert_eq!(window::planned_per_10s(400), 121);
    assert_eq!(window::planned_per_10s(0), 1);
    // One rotation, 10,000 nodes at 4,000 per 10 s: 148 GETs per second.
    assert_eq!(window_secs(10_000, 1, 4000), 68);
    // The same fleet scaled down by ten plans a lower share (its spread
    // fluctuates more, relatively): a longer window.
    assert_eq!(window_secs(1000, 1, 400), 83);
    // Ten rotations at once take ten times as long.
    assert_eq!(window_secs(10_000, 10, 4000), 675);
    // 900 nodes: 6.1 s, rounded up.
    assert_eq!(window_secs(900, 1, 4000), 7);
    // Never below 5 s, and `changed` is at least one.
    assert_eq!(window_secs(1, 1, 4000), window::MIN_WINDOW_SECS);
    assert_eq!(window_secs(1000, 0, 400), 83);
    // Rounds up.
    assert_eq!(window_secs(1089, 1, 400), 90);
}

#[test]
fn window_saturates_instead_of_overflowing() {
    let w = window_secs(u32::MAX, u32::MAX, 1);
    assert!(w > 1 << 60);
    assert_eq!(window_secs(10, 1, 0), 100);
    assert!(delay_ms_for("n", "s", 1, u64::MAX) < u64::MAX);
}

#[test]
fn delay_is_stable_and_inside_the_window() {
    // Pinned: the function is part of the documented contract
    // (docs/SCALING.md gives these same examples).
    assert_eq!(
        delay_ms_for("node-0001", "db-password", 1_767_225_600, 68),
        12_215
    );
    assert_eq!(
        delay_ms_for("aks-nodepool1-0", "api-key", 1_700_000_000, 55),
        13_548
    );
    for w in [1, 5, 50, 500] {
        for i in 0..200 {
            assert!(delay_ms_for(&format!("n{i}"), "s", 1, w) < w * 1000);
        }
    }
    assert_eq!(delay_ms_for("n", "s", 1, 0), 0);
}

/// The busiest `span_ms` of `delays`, sorted.
fn busiest(delays: &mut [u64], span_ms: u64) -> usize {
    delays.sort_unstable();
    let mut j = 0;
    let mut most = 0;
    for i in 0..delays.len() {
        while delays[i] - delays[j] >= span_ms {
            j += 1;
        }
        most = most.max(i + 1 - j);
    }
    most
}

#[test]
fn no_10s_of_a_rotation_reaches_45_percent_of_the_limit() {
    // A tenth of the fleet on a tenth of the limit (the simulation's scale,
    // where the spread fluctuates most), over many rotations; and the full
    // scale.
    for (nodes, limit) in [(1000u32, 400u32), (10_000, 4000)] {
        let w = window_secs(nodes, 1, limit);
        let mut worst = 0;
        for version in 0..40 {
            let mut d: Vec<u64> = (0..nodes)
                .map(|i| delay_ms_for(&format!("node-{i:05}"), "db", 1_767_225_600 + version, w))
                .collect();
            worst = worst.max(busiest(&mut d, 10_000));
        }
        // Planned at 40% with three standard deviations of room; the worst of
        // 40 rotations may cross 40% a little, never 45% (half the limit
        // keeps 5% more for the watcher's listing).
        assert!(
            worst as u64 * 100 <= u64::from(limit) * 45,
            "{nodes} nodes, limit {limit}, W = {w}: busiest 10 s {worst}"
        );
    }
}

#[test]
fn delays_spread_a_fleet_evenly() {
    // 10,000 nodes over 68 s: 147 a second on average; no second may hold
    // far more (a GET burst) or none at all.
    let mut per_second = [0u32; 68];
    for i in 0..10_000 {
        per_second[(delay_ms_for(&format!("node-{i}"), "db-password", 1_767_225_600, 68) / 1000)
            as usize] += 1;
    }
    let (min, max) = (
        per_second.iter().min().copied().unwrap_or(0),
        per_second.iter().max().copied().unwrap_or(0),
    );
    assert!(min > 100 && max < 200, "uneven spread: {min}..{max}");
    // Another version of the same secret lands each node elsewhere.
    let moved = (0..1000)
        .filter(|i| {
            let n = format!("node-{i}");
            delay_ms_for(&n, "s", 1, 50) != delay_ms_for(&n, "s", 2, 50)
        })
        .count();
    assert!(moved > 990, "{moved}");
}

fn data(secrets: &str) -> NoticeData {
    let mut d = BTreeMap::new();
    d.insert("vault".into(), "https://myvault.vault.azure.net".into());
    d.insert("fleetSize".into(), "1000".into());
    d.insert("limitPer10s".into(), "400".into());
    d.insert("secrets".into(), secrets.into());
    d.insert("listedAt".into(), "1767225600".into());
    d.insert("heartbeat".into(), "1767225600".into());
    d
}

#[test]
fn a_notice_parses() {
    let n = parse_notice(&data(
        r#"{"db-password":{"updated":1767225000,"enabled":true,"contentType":null,"expires":null},
            "api-key":{"updated":1,"enabled":false,"contentType":"text/plain","expires":1999999999,"future":1}}"#,
    ))
    .unwrap();
    assert_eq!(n.fleet_size, 1000);
    assert_eq!(n.limit_per_10s, 400);
    assert_eq!(n.vault, "https://myvault.vault.azure.net");
    let k = crate::secret::SecretName::parse("api-key").unwrap();
    assert_eq!(n.secrets[&k].content_type.as_deref(), Some("text/plain"));
    assert!(!n.secrets[&k].enabled);
    // What the watcher writes reads back the same.
    assert_eq!(parse_notice(&n.to_data()).unwrap(), n);
}

/// What kind of refusal, and of which field.
fn kind(e: &NoticeError) -> (&'static str, &'static str) {
    use NoticeError as E;
    match e {
        E::Overflow { key, .. } => ("overflow", key),
        E::OutOfRange { key, .. } => ("outside", key),
        E::NotDecimal { key, .. } => ("not decimal", key),
        E::Missing { key } => ("missing", key),
        E::Time { what, .. } => ("time", what),
        E::Vault => ("https", "vault"),
        E::Secrets(_) => ("not valid", "secrets"),
        E::SecretName { .. } => ("name", "secrets"),
        _ => ("other", ""),
    }
}

#[test]
fn hostile_notices_are_refused_with_a_reason() {
    let ok = r#"{"a":{"updated":1,"enabled":true}}"#;
    let bad = |key: &str, value: &str| {
        let mut d = data(ok);
        d.insert(key.into(), value.into());
        parse_notice(&d).unwrap_err()
    };
    let numbers = [
        ("fleetSize", "99999999999999999999999999999", "not decimal"),
        ("fleetSize", "0", "outside"),
        ("fleetSize", "-5", "not decimal"),
        ("fleetSize", "1e3", "not decimal"),
        ("limitPer10s", "18446744073709551616", "overflow"),
        ("listedAt", "253402300800", "outside"),
        ("heartbeat", "", "not decimal"),
    ];
    let cases = numbers
        .map(|(key, value, kind)| (key, value.to_string(), (kind, key)))
        .into_iter()
        .chain([("vault", "http://evil".into(), ("https", "vault"))]);
    // Secrets that are not the watcher's JSON, and what in them is wrong.
    let secrets = [
        ("[]", "not valid"),
        (r#"{"a":{"updated":"1","enabled":true}}"#, "not valid"),
        (r#"{"a":{"updated":1.5,"enabled":true}}"#, "not valid"),
        (r#"{"a":{"updated":1e300,"enabled":true}}"#, "not valid"),
        (
            r#"{"a":{"updated":99999999999999999999,"enabled":true}}"#,
            "not valid",
        ),
        (r#"{"a":{"updated":-1,"enabled":true}}"#, "time updated"),
        (r#"{"a":{"updated":1,"enabled":"yes"}}"#, "not valid"),
        (r#"{"a":{"updated":1}}"#, "not valid"),
        (
            r#"{"a":{"updated":1,"enabled":true,"expires":-9}}"#,
            "time expires",
        ),
        (r#"{"bad name!":{"updated":1,"enabled":true}}"#, "name"),
    ]
    .map(|(doc, what)| {
        let expected = match what.split_once(' ') {
            Some(("time", field)) => ("time", field),
            _ => (what, "secrets"),
        };
        ("secrets", doc.to_string(), expected)
    })
    .into_iter()
    .chain([("secrets", "[".repeat(10_000), ("not valid", "secrets"))]);
    for (key, value, expected) in cases.chain(secrets) {
        let e = bad(key, &value);
        assert_eq!(kind(&e), expected, "{key}={value:.40}: {e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let mut d = data(ok);
    d.remove("fleetSize");
    assert_eq!(
        kind(&parse_notice(&d).unwrap_err()),
        ("missing", "fleetSize")
    );
}

#[test]
fn huge_notices_are_refused() {
    let huge = format!(
        r#"{{"a":{{"updated":1,"enabled":true,"contentType":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    assert!(matches!(
        parse_notice(&data(&huge)).unwrap_err(),
        NoticeError::TooLarge { .. }
    ));
    let many: Vec<String> = (0..parse::MAX_SECRETS + 1)
        .map(|i| format!(r#""s{i}":{{"updated":1,"enabled":true}}"#))
        .collect();
    let e = parse_notice(&data(&format!("{{{}}}", many.join(",")))).unwrap_err();
    assert!(matches!(e, NoticeError::TooManySecrets { .. }), "{e:?}");
    let long_type = format!(
        r#"{{"a":{{"updated":1,"enabled":true,"contentType":"{}"}}}}"#,
        "x".repeat(300)
    );
    assert!(matches!(
        parse_notice(&data(&long_type)).unwrap_err(),
        NoticeError::ContentType { .. }
    ));
}

#[test]
fn source_settings_parse() {
    assert_eq!(
        SourceSpec::parse("configmap:akvfs/akvfs-notice-myvault").unwrap(),
        SourceSpec::ConfigMap {
            namespace: "akvfs".into(),
            name: "akvfs-notice-myvault".into()
        }
    );
    use crate::config::ConfigError as E;
    for (bad, what) in [
        ("", "kind"),
        ("configmap:", "slash"),
        ("configmap:ns", "slash"),
        ("configmap:/n", "namespace"),
        ("configmap:NS/n", "namespace"),
        ("crd:a/b", "kind"),
        ("configmap:a.b/n", "dot"),
        ("configmap:a/-n", "name"),
    ] {
        let e = SourceSpec::parse(bad).unwrap_err();
        let kind = match &e {
            E::NoticeSource { .. } => "kind",
            E::NoticeSourceSlash { .. } => "slash",
            E::NoticeSourceName { what, .. } => what,
            E::NoticeSourceNamespaceDot { .. } => "dot",
            _ => "other",
        };
        assert_eq!(kind, what, "{bad}: {e:?}");
    }
}

#[test]
fn changes_are_counted_against_the_previous_notice() {
    let names =
        |v: Vec<crate::secret::SecretName>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let n = parse_notice(&data(
        r#"{"a":{"updated":1767225590,"enabled":true},"b":{"updated":1767225400,"enabled":true},"c":{"updated":1000,"enabled":true}}"#,
    ))
    .unwrap();
    // A first notice: what changed within the horizon before listedAt.
    assert_eq!(names(node::changed_names(&n, None)), ["a", "b"]);
    // Against the previous notice: changed metadata (a newer a, a disabled c), and d gone.
    let prev = parse_notice(&data(
        r#"{"a":{"updated":1767225000,"enabled":true},"b":{"updated":1767225400,"enabled":true},"c":{"updated":1000,"enabled":false},"d":{"updated":5,"enabled":true}}"#,
    ))
    .unwrap();
    assert_eq!(
        names(node::changed_names(&n, Some(&prev.secrets))),
        ["a", "c", "d"]
    );
    assert!(node::changed_names(&n, Some(&n.secrets)).is_empty());
}

mod scheduler;
mod start;
