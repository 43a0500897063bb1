//! The metric families: names, types, HELP texts and labels, encoded by `prometheus-client` at each scrape.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{lock, MountMetrics};
use crate::cache::SecretCache;

/// The mounts whose metrics are exposed, read afresh at every scrape.
#[derive(Default)]
pub(super) struct Mounts(pub(super) Mutex<Vec<Arc<MountMetrics>>>);

impl Mounts {
    /// The mounts, each followed by the other vaults its views read from.
    pub(super) fn list(&self) -> Vec<Arc<MountMetrics>> {
        let mut out = Vec::new();
        for m in lock(&self.0).iter() {
            out.push(Arc::clone(m));
            out.extend(lock(&m.vaults).iter().cloned());
        }
        out
    }
}

impl std::fmt::Debug for Mounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounts")
            .field("count", &lock(&self.0).len())
            .finish()
    }
}

type Labels = Vec<(&'static str, String)>;

/// The labels every series has.
fn base(m: &MountMetrics) -> Labels {
    vec![
        ("mountpoint", m.mountpoint.clone()),
        ("vault", m.vault.clone()),
    ]
}

fn with(m: &MountMetrics, extra: &[(&'static str, &str)]) -> Labels {
    let mut labels = base(m);
    labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    labels
}

/// One family: its descriptor, then one sample (or histogram) per label set.
/// A counter's name is given without `_total`; the encoder appends it.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[(Labels, M)],
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in rows {
        metric.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

/// A cache statistic of the mount, 0 before its cache is attached.
fn cache_stat(m: &MountMetrics, f: &dyn Fn(&SecretCache) -> u64) -> u64 {
    lock(&m.cache).as_ref().map(|c| f(c)).unwrap_or(0)
}

/// `exp` of each cached secret that has one, by name.
fn expiries(m: &MountMetrics) -> Vec<(String, i64)> {
    lock(&m.cache)
        .as_ref()
        .map(|c| {
            c.latest_entries()
                .iter()
                .filter_map(|e| e.props.expires.map(|t| (e.props.name.to_string(), t)))
                .collect()
        })
        .unwrap_or_default()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Mounts {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let mounts = self.list();
        let each_counter = |f: &dyn Fn(&MountMetrics) -> u64| -> Vec<(Labels, ConstCounter<u64>)> {
            mounts.iter().map(|m| (base(m), counter(f(m)))).collect()
        };
        let each_gauge = |f: &dyn Fn(&MountMetrics) -> i64| -> Vec<(Labels, ConstGauge<i64>)> {
            mounts.iter().map(|m| (base(m), gauge(f(m)))).collect()
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

        family(
            &mut enc,
            "akvfs_mount_up",
            "1 while the mount is serving.",
            MetricType::Gauge,
            &each_gauge(&|m| i64::from(m.up.load(Ordering::Relaxed))),
        )?;
        family(
            &mut enc,
            "akvfs_lookups",
            "Name lookups that reached the daemon.",
            MetricType::Counter,
            &each_counter(&|m| load(&m.lookups)),
        )?;
        family(
            &mut enc,
            "akvfs_reads",
            "Reads that reached the daemon; reads served from the kernel page cache are not seen.",
            MetricType::Counter,
            &each_counter(&|m| load(&m.reads)),
        )?;
        family(
            &mut enc,
            "akvfs_read_bytes",
            "Bytes returned by reads that reached the daemon.",
            MetricType::Counter,
            &each_counter(&|m| load(&m.read_bytes)),
        )?;
        family(
            &mut enc,
            "akvfs_cache_hits",
            "Lookups and reads answered from the value cache.",
            MetricType::Counter,
            &each_counter(&|m| cache_stat(m, &|c| load(&c.stats.hits))),
        )?;
        family(
            &mut enc,
            "akvfs_cache_misses",
            "Lookups and reads that had to fetch from the vault.",
            MetricType::Counter,
            &each_counter(&|m| cache_stat(m, &|c| load(&c.stats.misses))),
        )?;
        family(
            &mut enc,
            "akvfs_cache_evictions",
            "Values evicted to stay within the cache budget.",
            MetricType::Counter,
            &each_counter(&|m| cache_stat(m, &|c| load(&c.stats.evictions))),
        )?;
        family(
            &mut enc,
            "akvfs_cache_bytes",
            "Bytes charged against the cache budget.",
            MetricType::Gauge,
            &each_gauge(&|m| to_i64(cache_stat(m, &|c| c.bytes()))),
        )?;
        family(
            &mut enc,
            "akvfs_cache_entries",
            "Cached secret versions.",
            MetricType::Gauge,
            &each_gauge(&|m| to_i64(cache_stat(m, &|c| c.len() as u64))),
        )?;
        family(
            &mut enc,
            "akvfs_cache_negative_entries",
            "Remembered refusals (not found, forbidden); bounded.",
            MetricType::Gauge,
            &each_gauge(&|m| to_i64(cache_stat(m, &|c| c.negative_len() as u64))),
        )?;
        family(
            &mut enc,
            "akvfs_lookups_refused",
            "Lookups of names missing from the listing answered without asking the vault because the cold-lookup budget was spent.",
            MetricType::Counter,
            &each_counter(&|m| cache_stat(m, &|c| load(&c.stats.lookups_refused))),
        )?;

        let mut earliest = Vec::new();
        let mut named = Vec::new();
        for m in &mounts {
            let mut ex = expiries(m);
            if let Some(min) = ex.iter().map(|(_, t)| *t).min() {
                earliest.push((base(m), gauge(min)));
            }
            if m.secret_names {
                ex.sort();
                for (name, t) in ex {
                    named.push((with(m, &[("secret", &name)]), gauge(t)));
                }
            }
        }
        family(
            &mut enc,
            "akvfs_secret_earliest_expiry_timestamp_seconds",
            "Earliest expiry (exp, Unix seconds) among cached secrets that have one; absent when none has.",
            MetricType::Gauge,
            &earliest,
        )?;
        if !named.is_empty() {
            family(
                &mut enc,
                "akvfs_secret_expiry_timestamp_seconds",
                "Expiry (exp, Unix seconds) of each cached secret that has one (only with metrics_secret_names).",
                MetricType::Gauge,
                &named,
            )?;
        }
        let mut cert_earliest = Vec::new();
        let mut cert_named = Vec::new();
        for m in &mounts {
            let ex = m.certificate_expiries();
            if let Some(min) = ex.iter().map(|(_, t)| *t).min() {
                cert_earliest.push((base(m), gauge(min)));
            }
            if m.secret_names {
                for (name, t) in ex {
                    cert_named.push((with(m, &[("certificate", &name)]), gauge(t)));
                }
            }
        }
        family(
            &mut enc,
            "akvfs_certificate_earliest_expiry_timestamp_seconds",
            "Earliest notAfter (Unix seconds) among certificates read through .certs; absent when none was.",
            MetricType::Gauge,
            &cert_earliest,
        )?;
        if !cert_named.is_empty() {
            family(
                &mut enc,
                "akvfs_certificate_expiry_timestamp_seconds",
                "notAfter (Unix seconds) of each certificate read through .certs (only with metrics_secret_names).",
                MetricType::Gauge,
                &cert_named,
            )?;
        }
        family(
            &mut enc,
            "akvfs_stale_reads",
            "Lookups and reads served from a value the vault has not confirmed recently (vault unreachable or throttling).",
            MetricType::Counter,
            &each_counter(&|m| load(&m.stale_reads)),
        )?;
        family(
            &mut enc,
            "akvfs_token_refreshes",
            "Access tokens obtained.",
            MetricType::Counter,
            &each_counter(&|m| load(&m.token_refreshes)),
        )?;
        let lag: Vec<_> = mounts
            .iter()
            .map(|m| (base(m), ConstGauge::new(m.refresh_lag())))
            .collect();
        family(
            &mut enc,
            "akvfs_refresh_lag_seconds",
            "Seconds since the refresher last completed a check against the vault.",
            MetricType::Gauge,
            &lag,
        )?;

        let mut cycles = Vec::new();
        for m in &mounts {
            for (result, n) in lock(&m.refresh_cycles).iter() {
                cycles.push((with(m, &[("result", result)]), counter(*n)));
            }
        }
        family(
            &mut enc,
            "akvfs_refresh_cycles",
            "Refresh cycles by result.",
            MetricType::Counter,
            &cycles,
        )?;

        let mut upstream = Vec::new();
        for m in &mounts {
            for ((op, status), n) in lock(&m.upstream).iter() {
                upstream.push((
                    with(m, &[("operation", op), ("status", status)]),
                    counter(*n),
                ));
            }
        }
        family(
            &mut enc,
            "akvfs_upstream_requests",
            "Calls to Key Vault by operation (get, list page) and outcome.",
            MetricType::Counter,
            &upstream,
        )?;

        let mut latency = Vec::new();
        for m in &mounts {
            for (op, h) in lock(&m.latency).iter() {
                latency.push((with(m, &[("operation", op)]), h.clone()));
            }
        }
        family(
            &mut enc,
            "akvfs_upstream_request_duration_seconds",
            "Latency of calls to Key Vault.",
            MetricType::Histogram,
            &latency,
        )?;

        let mut lookups = Vec::new();
        for m in &mounts {
            for (name, n) in lock(&m.secret_lookups).iter() {
                lookups.push((with(m, &[("secret", name)]), counter(*n)));
            }
        }
        if !lookups.is_empty() {
            family(
                &mut enc,
                "akvfs_secret_lookups",
                "Lookups by secret name (only with metrics_secret_names).",
                MetricType::Counter,
                &lookups,
            )?;
        }
        Ok(())
    }
}
