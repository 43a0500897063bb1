//! `akvfs csi` under many identities: a slow vault holds up only its own identity's publishes,
//! publishes of one identity still make one mount, and a volume's value cache stays within the
//! node's maximum.
//!
//! No assertion depends on how long anything took: the slow publish is held by a vault delay far
//! longer than anything else in the test, and eventual states are awaited with generous deadlines.

mod common;

use std::time::Duration;

use akvfs_emulator::Operation;
use common::csi::*;
use common::*;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(60);
/// How long the vault takes to answer the slow identity's first listing.
const SLOW_VAULT: Duration = Duration::from_secs(30);
const CLIENT_A: &str = "a1a1a1a1-0000-4000-8000-00000000000a";
const CLIENT_B: &str = "b2b2b2b2-0000-4000-8000-00000000000b";

#[test]
fn a_slow_vault_holds_up_only_its_own_identity_and_one_identity_makes_one_mount() {
    if !can_run() {
        return;
    }
    let emu = emulator_with(&[("shared", "value-shared")]);
    let a1 = Pod::new("ns-a", "sa-a", "app-a-1");
    let a2 = Pod::new("ns-a", "sa-a", "app-a-2");
    let b = Pod::new("ns-b", "sa-b", "app-b-1");
    add_identity(&emu, CLIENT_A, &a1.subject(), &[]);
    add_identity(&emu, CLIENT_B, &b.subject(), &[]);
    let kubelet = KubeletDir::new();
    let mut plugin = Plugin::start(&emu, &kubelet);
    let slow = |pod: &Pod| {
        let mut v = Volume::new(&emu, &kubelet, pod, CLIENT_A);
        // Long enough to outwait the slow vault.
        v.attributes.insert(
            "fetch_timeout".into(),
            format!("{}s", SLOW_VAULT.as_secs() * 3),
        );
        v
    };
    let (va1, va2) = (slow(&a1), slow(&a2));
    let vb = Volume::new(&emu, &kubelet, &b, CLIENT_B);

    // The first listing the vault sees (sa-a's first mount) is answered late.
    emu.inject_fault(
        Fault::latency(SLOW_VAULT)
            .for_operation(Operation::ListSecrets)
            .times(1),
    );
    let first = plugin.publish_in_background(&va1);
    assert!(
        wait_until(LIMIT, || emu.inner().faults().iter().all(|f| f.fired >= 1)),
        "sa-a's publish never reached the vault:\n{}",
        plugin.log()
    );
    // A second pod of sa-a queues behind the first; sa-b goes ahead of both.
    let second = plugin.publish_in_background(&va2);
    plugin
        .publish(&vb)
        .unwrap_or_else(|s| panic!("sa-b's publish: {s:?}\n{}", plugin.log()));
    assert_eq!(vb.read("shared").unwrap(), "value-shared");
    assert!(
        !first.is_finished() && !second.is_finished(),
        "sa-b's publish waited for sa-a's slow vault"
    );

    for (what, publish) in [("first", first), ("second", second)] {
        publish
            .join()
            .unwrap()
            .unwrap_or_else(|s| panic!("sa-a's {what} publish: {s:?}\n{}", plugin.log()));
    }
    assert_eq!(va1.read("shared").unwrap(), "value-shared");
    assert_eq!(va2.read("shared").unwrap(), "value-shared");
    assert_eq!(
        akvfs_mounts_under(&kubelet.state_dir()),
        2,
        "one mount per identity, whatever the order of the publishes"
    );
    for v in [&va1, &va2, &vb] {
        plugin.unpublish(v).unwrap();
    }
    assert_eq!(akvfs_mounts_under(&kubelet.path), 0);
}

/// The sum of a metric family's samples in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_volume_cache_stays_within_the_node_maximum_and_more_is_refused() {
    if !can_run() {
        return;
    }
    // 24 values of 8 KiB: three times what a volume may cache here.
    let values: Vec<(String, String)> = (0..24)
        .map(|i| (format!("big-{i:02}"), format!("{i:02}").repeat(4096)))
        .collect();
    let emu = emulator_with_owned(&values);
    let pod = Pod::new("ns-a", "sa-a", "app-a-1");
    add_identity(&emu, CLIENT_A, &pod.subject(), &[]);
    let kubelet = KubeletDir::new();
    let port = free_port();
    let mut plugin = Plugin::start_with(
        &emu,
        &kubelet,
        &[
            "--max-volume-cache-bytes".into(),
            "64KiB".into(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{port}"),
        ],
    );

    let mut greedy = Volume::new(&emu, &kubelet, &pod, CLIENT_A);
    greedy
        .attributes
        .insert("cache_bytes".into(), "1MiB".into());
    let err = plugin
        .publish(&greedy)
        .expect_err("over the node's maximum");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    for says in ["cache_bytes", "1 MiB", "64 KiB", "--max-volume-cache-bytes"] {
        assert!(err.message().contains(says), "{}", err.message());
    }
    assert!(mount_at(&greedy.target).is_none(), "the target was mounted");

    // A volume that sets no cache_bytes gets the node's maximum.
    let v = Volume::new(&emu, &kubelet, &pod, CLIENT_A);
    plugin.publish(&v).unwrap();
    for (name, value) in &values {
        assert_eq!(&v.read(name).unwrap(), value, "{name}");
    }
    let text = http_get(port, "/metrics");
    let cached = metric(&text, "akvfs_cache_bytes");
    assert!(
        cached > 0.0 && cached <= (64 << 10) as f64,
        "the cache holds {cached} bytes, over its 64 KiB cap"
    );
    assert!(
        metric(&text, "akvfs_cache_evictions_total") > 0.0,
        "nothing was evicted:\n{text}"
    );
    plugin.unpublish(&v).unwrap();
}
