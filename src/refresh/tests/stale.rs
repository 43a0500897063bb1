//! Old values served while the vault fails, and expired secrets served and reported.
//!
//! Up to `max_stale` per secret, throttling bounded; an expired secret is warned about once
//! and exported as metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{long_ago, setup, Setup};
use crate::fs::fixture::read;
use crate::refresh::*;
use crate::vault::VaultError;

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_serving_until_max_stale() {
    let s = setup(RefreshConfig {
        max_stale: Duration::from_millis(300),
        ..Default::default()
    });
    s.vault.put("k", b"v");
    read(&s.core, "k").await.unwrap();
    s.vault.fail_with(VaultError::Unavailable("503".into()));
    let r = s.refresher.cycle().await;
    assert!(r.error.is_some());
    assert!(r.revoked.is_empty());
    assert_eq!(
        read(&s.core, "k").await.unwrap(),
        b"v",
        "stale value served"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = s.refresher.cycle().await;
    assert_eq!(r.revoked, vec!["k".to_string()]);
    assert_eq!(read(&s.core, "k").await.unwrap_err(), libc::EIO);
}

#[tokio::test(start_paused = true)]
async fn max_stale_applies_per_secret_when_the_list_works_but_gets_fail() {
    let rotate_and_break_gets = |s: &Setup| {
        s.vault.put("db", b"new");
        s.vault.set_updated("db", 1_600_000_100);
        s.vault
            .fail_gets_with(Some(VaultError::Unavailable("503".into())));
    };
    // Baseline: within --max-stale the old value keeps serving.
    let s = setup(RefreshConfig::default());
    s.vault.put("db", b"old");
    long_ago(&s.vault, "db");
    read(&s.core, "db").await.unwrap();
    rotate_and_break_gets(&s);
    let r = s.refresher.cycle().await;
    assert!(r.error.is_some() && r.revoked.is_empty(), "{r:?}");
    assert_eq!(read(&s.core, "db").await.unwrap(), b"old");

    // Past it, the secret is dropped although every list succeeded.
    let s = setup(RefreshConfig {
        max_stale: Duration::from_millis(1),
        ..Default::default()
    });
    s.vault.put("db", b"old");
    long_ago(&s.vault, "db");
    read(&s.core, "db").await.unwrap();
    rotate_and_break_gets(&s);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = s.refresher.cycle().await;
    assert_eq!(r.list_pages, 1);
    assert_eq!(r.revoked, vec!["db".to_string()], "{r:?}");
    assert_eq!(read(&s.core, "db").await.unwrap_err(), libc::EIO);
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_clamped() {
    let s = setup(RefreshConfig::default());
    s.vault.put("a", b"1");
    read(&s.core, "a").await.unwrap();
    s.vault.fail_with(VaultError::Throttled {
        retry_after: Some(Duration::from_secs(u64::MAX)),
    });
    let r = s.refresher.cycle().await;
    assert_eq!(r.retry_after, Some(crate::vault::MAX_SERVER_DELAY));
}

/// Log lines written while `f` runs on this thread.
fn logs_of<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || rt.block_on(f));
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn expired_secrets_are_served_warned_about_once_and_exported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(RefreshConfig::default());
    s.vault.put("old-cert", b"pem");
    long_ago(&s.vault, "old-cert");
    s.vault.set_validity("old-cert", Some(1_600_000_000), None);
    s.vault.put("fresh", b"v");
    long_ago(&s.vault, "fresh");
    s.vault.set_validity("fresh", Some(4_000_000_000), None);
    let log = logs_of(&rt, async {
        assert_eq!(read(&s.core, "old-cert").await.unwrap(), b"pem");
        read(&s.core, "fresh").await.unwrap();
        for _ in 0..3 {
            s.refresher.cycle().await;
        }
    });
    assert_eq!(log.matches("secret has expired").count(), 1, "{log}");
    assert!(log.contains("old-cert"));

    let render = |names: bool| {
        let m = crate::metrics::MountMetrics::new("/m", "v", Duration::from_secs(60), names);
        m.attach_cache(s.core.cache());
        let reg = crate::metrics::Registry::default();
        reg.add(m);
        reg.render()
    };
    let text = render(false);
    assert!(
        text.contains("akvfs_secret_earliest_expiry_timestamp_seconds{mountpoint=\"/m\",vault=\"v\"} 1600000000"),
        "{text}"
    );
    assert!(!text.contains("akvfs_secret_expiry_timestamp_seconds{"));
    let text = render(true);
    assert!(text.contains(
        "akvfs_secret_expiry_timestamp_seconds{mountpoint=\"/m\",vault=\"v\",secret=\"fresh\"} 4000000000"
    ));
}
