//! Publish-to-first-read time, memory per identity mount, and vault calls per node as a
//! function of the number of identities, each against a baseline from the same run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::kubelet::{Ident, Plugin, Pod};
use crate::load;
use crate::report::{Row, Section};
use crate::rig::{self, Akvfs, Result, Vault};
use crate::stats::{median, round, slope};
use crate::Ctx;

fn read_exact(pod_or_dir: &std::path::Path, name: &str, want: &str) -> Result<()> {
    match load::read_file(&pod_or_dir.join(name)) {
        Some(b) if b == want.as_bytes() => Ok(()),
        Some(_) => Err(format!(
            "{} read other bytes",
            pod_or_dir.join(name).display()
        )),
        None => Err(format!(
            "{} cannot be read",
            pod_or_dir.join(name).display()
        )),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Time from NodePublishVolume to the first read of a secret's exact bytes, for an identity
/// with no mount on the node yet (token exchange, mount, one GET) and for a second pod joining
/// it (token exchange, bind); baseline: `akvfs mount` started to its first read.
pub fn first_read(ctx: &Ctx) -> Result<Section> {
    let files = rig::secrets("f-", 100, 100);
    let (name, value) = files[0].clone();
    let vault = Vault::start(&files)?;
    vault.settle();
    let mut plugin = Plugin::start(&ctx.bin, &vault, &ctx.work.dir("first-csi")?)?;
    let samples = if ctx.plan.quick { 5 } else { 15 };
    let (mut cold, mut join, mut publish_rpc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        let ident = Ident::add(&vault, 100 + i)?;
        let first = plugin.pod(&ident)?;
        let t = Instant::now();
        plugin.publish(&vault, &first, &[])?;
        publish_rpc.push(ms(t.elapsed()));
        read_exact(&first.target, &name, &value)?;
        cold.push(ms(t.elapsed()));
        let second = plugin.pod(&ident)?;
        let t = Instant::now();
        plugin.publish(&vault, &second, &[])?;
        read_exact(&second.target, &name, &value)?;
        join.push(ms(t.elapsed()));
        plugin.unpublish(&second)?;
        plugin.unpublish(&first)?;
    }
    let mut host = Vec::new();
    for i in 0..(samples / 3).max(2) {
        let at = ctx.work.dir(&format!("first-hostpath-{i}"))?;
        let t = Instant::now();
        let m = Akvfs::mount(&ctx.bin, &vault, &at, &[])?;
        read_exact(&m.path, &name, &value)?;
        host.push(ms(t.elapsed()));
    }
    let max = |xs: &[f64]| xs.iter().cloned().fold(0.0, f64::max);
    let rows = vec![
        Row::new(
            "CSI: publish to first read, new identity on the node",
            format!("p50 {:.0} ms, max {:.0} ms ({samples} identities; the publish call alone p50 {:.0} ms)",
                median(&cold), max(&cold), median(&publish_rpc)),
        )
        .baseline(format!("akvfs mount, start to first read: p50 {:.0} ms", median(&host))),
        Row::new(
            "CSI: publish to first read, second pod of a mounted identity",
            format!("p50 {:.0} ms, max {:.0} ms", median(&join), max(&join)),
        )
        .baseline(format!("new identity p50 {:.0} ms", median(&cold))),
    ];
    Ok(Section {
        key: "csi_first_read",
        rows,
        json: json!({
            "new_identity_ms": cold.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "publish_rpc_ms": publish_rpc.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "join_ms": join.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "akvfs_mount_ms": host.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
        }),
    })
}

/// RSS of the plugin (with any child processes) as identity mounts are added, each with 100
/// cached 1 KiB secrets; baseline: a whole `akvfs mount` process with the same cache.
pub fn memory(ctx: &Ctx) -> Result<Section> {
    let files = rig::secrets("m-", 100, 1024);
    let vault = Vault::start(&files)?;
    vault.settle();
    let mut plugin = Plugin::start(&ctx.bin, &vault, &ctx.work.dir("memory-csi")?)?;
    let identities = if ctx.plan.quick { 4 } else { 8 };
    std::thread::sleep(Duration::from_secs(1));
    let mut xs = vec![0.0];
    let mut ys = vec![plugin.rss_kib() as f64];
    let mut pods: Vec<Pod> = Vec::new();
    for i in 1..=identities {
        let ident = Ident::add(&vault, 200 + i)?;
        let pod = plugin.pod(&ident)?;
        plugin.publish(&vault, &pod, &[])?;
        for (n, v) in &files {
            read_exact(&pod.target, n, v)?;
        }
        pods.push(pod);
        std::thread::sleep(Duration::from_millis(500));
        xs.push(i as f64);
        ys.push(plugin.rss_kib() as f64);
    }
    let per = slope(&xs, &ys);
    for p in &pods {
        plugin.unpublish(p)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = plugin.rss_kib();
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("memory-hostpath")?, &[])?;
    for (n, v) in &files {
        read_exact(&m.path, n, v)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let whole = m.status()?.vm_rss;
    let rows = vec![Row::new(
        "CSI: memory per identity mount (100 cached 1 KiB secrets each)",
        format!(
            "{:.0} KiB per identity (plugin RSS {:.1} MiB idle, {:.1} MiB with {identities} identities, {:.1} MiB after they all unpublished)",
            per,
            ys[0] / 1024.0,
            ys[ys.len() - 1] / 1024.0,
            after as f64 / 1024.0
        ),
    )
    .baseline(format!("a whole akvfs mount process: {:.1} MiB", whole as f64 / 1024.0))];
    Ok(Section {
        key: "csi_memory",
        rows,
        json: json!({
            "identities": xs, "rss_kib": ys, "kib_per_identity": round(per, 0),
            "rss_after_unpublish_kib": after, "akvfs_mount_rss_kib": whole,
        }),
    })
}

/// Vault calls of one node for N identities with P pods each, all reading the same 20 secrets:
/// the cold reads (one GET per identity and secret, whatever the pods), then a window of
/// refreshes at `refresh_interval: 2s`.
pub fn calls(ctx: &Ctx) -> Result<Section> {
    const SECRETS: usize = 20;
    const INTERVAL_S: f64 = 2.0;
    let files = rig::secrets("c-", SECRETS, 100);
    let vault = Vault::start(&files)?;
    vault.settle();
    let mut plugin = Plugin::start(&ctx.bin, &vault, &ctx.work.dir("calls-csi")?)?;
    let window = Duration::from_secs(if ctx.plan.quick { 6 } else { 20 });
    let shapes: &[(usize, usize)] = if ctx.plan.quick {
        &[(1, 1), (1, 4), (2, 2), (4, 2)]
    } else {
        &[(1, 1), (1, 4), (2, 2), (4, 2), (8, 2)]
    };
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let mut next_ident = 300;
    for &(identities, per) in shapes {
        vault.emu.reset_counts();
        let mut pods = Vec::new();
        for _ in 0..identities {
            next_ident += 1;
            let ident = Ident::add(&vault, next_ident)?;
            for _ in 0..per {
                let pod = plugin.pod(&ident)?;
                plugin.publish(&vault, &pod, &[("refresh_interval", "2s")])?;
                pods.push(pod);
            }
        }
        for pod in &pods {
            for (n, v) in &files {
                read_exact(&pod.target, n, v)?;
            }
        }
        let cold_gets = vault.count("get_secret");
        let setup_tokens = vault.token_requests();
        vault.emu.reset_counts();
        std::thread::sleep(window);
        let (lists, gets, tokens) = (
            vault.count("list_secrets"),
            vault.count("get_secret"),
            vault.token_requests(),
        );
        for pod in &pods {
            plugin.unpublish(pod)?;
        }
        let intervals = window.as_secs_f64() / INTERVAL_S;
        let per_identity = lists as f64 / intervals / identities as f64;
        let pass = cold_gets == (identities * SECRETS) as u64 && gets == 0;
        rows.push(
            Row::new(
                format!("CSI: vault calls, {identities} identit{} x {per} pod{}", if identities == 1 { "y" } else { "ies" }, if per == 1 { "" } else { "s" }),
                format!(
                    "{cold_gets} GETs for {} pods' cold reads of {SECRETS} secrets ({setup_tokens} token requests); then {:.2} list calls per identity per 2 s interval, {gets} GETs, {tokens} token requests in {} s",
                    identities * per, per_identity, window.as_secs()
                ),
            )
            .goal(format!("{} GETs (one per identity and secret), 0 while warm", identities * SECRETS), pass),
        );
        out.push(json!({
            "identities": identities, "pods_per_identity": per, "secrets": SECRETS,
            "cold_gets": cold_gets, "setup_token_requests": setup_tokens,
            "window_s": window.as_secs(), "list_calls": lists, "gets": gets, "token_requests": tokens,
            "list_calls_per_identity_per_interval": round(per_identity, 2),
        }));
    }
    Ok(Section {
        key: "csi_vault_calls",
        rows,
        json: json!(out),
    })
}
