//! The scenarios, in order. Each prints one line: what it measured, the target, and whether
//! the measurement met it.

use std::time::{Duration, Instant};

use akvfs::sim::{lock, Notice};
use serde_json::{json, Value};

use super::agents::Agent;
use super::meter::Usage;
use super::procs::RealMount;
use super::Fleet;

fn row(name: &str, ok: bool, text: String, mut extra: Value) -> Value {
    println!("{name:<16} {} {text}", if ok { "MET " } else { "MISS" });
    extra["scenario"] = json!(name);
    extra["met"] = json!(ok);
    extra["summary"] = json!(text);
    extra
}

fn pct(calls: u64, limit: u32) -> f64 {
    calls as f64 * 100.0 / f64::from(limit)
}

/// Waits until every agent satisfies `done` and every real mount `real_done`, at most
/// `limit`; how many did, of how many, and the seconds it took. Real mounts are read through
/// FUSE every 2 s (from their memory: a cached value costs no call).
async fn converge(
    f: &Fleet,
    limit: Duration,
    done: impl Fn(&Agent) -> bool,
    real_done: impl Fn(&RealMount) -> bool,
) -> (usize, usize, Option<f64>) {
    let t = Instant::now();
    let mut real_ok = 0;
    let mut last_real: Option<Instant> = None;
    loop {
        if last_real.is_none_or(|l| l.elapsed() >= Duration::from_secs(2)) {
            real_ok = f.procs.mounts.iter().filter(|m| real_done(m)).count();
            last_real = Some(Instant::now());
        }
        let agents = f.agents.lock().await;
        let ok = agents.iter().filter(|a| done(a)).count() + real_ok;
        let all = agents.len() + f.procs.mounts.len();
        if ok == all {
            return (ok, all, Some(t.elapsed().as_secs_f64()));
        }
        if t.elapsed() > limit {
            return (ok, all, None);
        }
        drop(agents);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The window the nodes computed for the last notice they got (the widest, should they
/// differ).
async fn fleet_w(f: &Fleet) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agents = f.agents.lock().await;
    agents
        .iter()
        .map(|a| a.stats.get(&a.stats.window))
        .max()
        .unwrap_or(0)
}

/// `updated` of `name` in a notice (`i64::MIN` when absent).
fn updated_of(n: Option<&Notice>, name: &str) -> i64 {
    n.and_then(|n| {
        n.secrets
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, m)| m.updated)
    })
    .unwrap_or(i64::MIN)
}

/// Waits for the watchers to publish content with `pred` true.
async fn published(f: &Fleet, limit: Duration, pred: impl Fn(&Notice) -> bool) -> Option<f64> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f.bus.current().as_ref().is_some_and(&pred) {
            return Some(t.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn window_text(u: &Usage, limit: u32) -> String {
    format!(
        "busiest 10 s {} calls ({:.0}% of {limit}), {} answered 429",
        u.max_10s,
        pct(u.max_10s, limit),
        u.throttled
    )
}

/// Rotates `names` at once; waits for every agent to hold the new versions.
async fn rotation(f: &Fleet, label: &str, names: &[String], slack: u64) -> Value {
    let t0 = Instant::now();
    let old = f.bus.current();
    let mut versions = Vec::new();
    for n in names {
        let value = format!("{n}-{}", fastrand::u64(..));
        match f.emu.set_secret(n, &value) {
            Ok(v) => versions.push((n.clone(), v, value)),
            Err(e) => {
                return row(
                    label,
                    false,
                    format!("the emulator refused a rotation: {e}"),
                    json!({}),
                )
            }
        }
    }
    // Until the notice carrying every change is out.
    let seen = published(f, Duration::from_secs(60), |n| {
        names
            .iter()
            .all(|x| updated_of(Some(n), x) > updated_of(old.as_ref(), x))
    })
    .await;
    // The W the fleet computed from the notice that carried the change.
    let w = fleet_w(f).await;
    let limit = Duration::from_secs(w + slack + 60);
    let (ok, all, secs) = converge(
        f,
        limit,
        |a| {
            versions
                .iter()
                .all(|(n, v, _)| a.cached_version(n).as_deref() == Some(v.as_str()))
        },
        |m| {
            versions
                .iter()
                .all(|(n, _, value)| m.read(n).as_deref() == Some(value.as_str()))
        },
    )
    .await;
    let u = f.meter.since(t0);
    let target = w + f.args.watch_interval + slack;
    let met = secs.is_some_and(|s| s <= target as f64)
        && u.max_10s * 2 <= u64::from(f.args.limit)
        && u.throttled == 0;
    let text = format!(
        "{} rotated: {ok}/{all} nodes on the new version{}; W = {w} s, target W + watcher interval + {slack} s = {target} s; {}",
        names.len(),
        secs.map(|s| format!(" after {s:.1} s")).unwrap_or_default(),
        window_text(&u, f.args.limit)
    );
    let _ = seen;
    row(
        label,
        met,
        text,
        json!({"w": w, "seconds": secs, "nodes_done": ok, "nodes": all, "max_10s": u.max_10s, "throttled": u.throttled, "calls": u.calls}),
    )
}

async fn steady(f: &Fleet) -> Value {
    let t0 = Instant::now();
    let w0 = f.watcher_pages();
    tokio::time::sleep(Duration::from_secs(f.args.steady_secs)).await;
    let u = f.meter.since(t0);
    let watcher = f.watcher_pages() - w0;
    let nodes = u.calls.saturating_sub(watcher);
    let per10 = nodes as f64 * 10.0 / u.secs.max(1.0);
    let met = per10 <= f64::from(f.args.limit) / 100.0;
    let text = format!(
        "{:.0} s: nodes {nodes} calls ({per10:.2} per 10 s = {:.2}% of {}; target 1%), the leader watcher {watcher} list pages ({:.2} per 10 s)",
        u.secs,
        per10 * 100.0 / f64::from(f.args.limit),
        f.args.limit,
        watcher as f64 * 10.0 / u.secs.max(1.0)
    );
    row(
        "steady",
        met,
        text,
        json!({"seconds": u.secs, "node_calls": nodes, "watcher_pages": watcher, "throttled": u.throttled}),
    )
}

async fn leader_kill(f: &Fleet) -> Value {
    let names = [
        f.hot[1 % f.hot.len()].clone(),
        f.hot[2 % f.hot.len()].clone(),
    ];
    let t0 = Instant::now();
    let v1 = f
        .emu
        .set_secret(&names[0], "after-kill-1")
        .unwrap_or_default();
    // Kill the leader at once (SIGKILL: it gives nothing up), before or while it lists;
    // change another secret while no replica leads.
    let leader = f.procs.leader();
    if let Some(l) = &leader {
        f.procs.kill_watcher(l);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = f.bus.current();
    let v2 = f
        .emu
        .set_secret(&names[1], "after-kill-2")
        .unwrap_or_default();
    let _ = published(f, Duration::from_secs(60), |n| {
        updated_of(Some(n), &names[1]) > updated_of(old.as_ref(), &names[1])
    })
    .await;
    let taken = t0.elapsed().as_secs_f64();
    let w = fleet_w(f).await;
    let (ok, all, secs) = converge(
        f,
        Duration::from_secs(w + 90),
        |a| {
            a.cached_version(&names[0]).as_deref() == Some(v1.as_str())
                && a.cached_version(&names[1]).as_deref() == Some(v2.as_str())
        },
        |m| {
            m.read(&names[0]).as_deref() == Some("after-kill-1")
                && m.read(&names[1]).as_deref() == Some("after-kill-2")
        },
    )
    .await;
    let u = f.meter.since(t0);
    let _ = f.procs.start_watcher();
    let met = ok == all && u.throttled == 0;
    let text = format!(
        "leader {leader:?} killed mid-rotation; the standby published after {taken:.1} s; {ok}/{all} nodes got both changes{} (W = {w} s); {}",
        secs.map(|s| format!(" in {s:.1} s")).unwrap_or_default(),
        window_text(&u, f.args.limit)
    );
    row(
        "leader-kill",
        met,
        text,
        json!({"seconds": secs, "takeover_s": taken, "nodes_done": ok, "max_10s": u.max_10s, "throttled": u.throttled}),
    )
}

async fn relist(f: &Fleet) -> Value {
    let name = f.hot[3 % f.hot.len()].clone();
    let t0 = Instant::now();
    let old = f.bus.current();
    f.bus.drop_events(true);
    let v = f
        .emu
        .set_secret(&name, "during-the-gap")
        .unwrap_or_default();
    let _ = published(f, Duration::from_secs(30), |n| {
        updated_of(Some(n), &name) > updated_of(old.as_ref(), &name)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(f.args.watch_interval + 1)).await;
    let missed = {
        let agents = f.agents.lock().await;
        agents
            .iter()
            .filter(|a| a.stats.get(&a.stats.scheduled) > 0)
            .count()
    };
    f.bus.drop_events(false);
    f.bus.expire();
    // The real mounts' watches (and the relay's) end with 410 too: they get the object again.
    f.procs.kube.expire_watches();
    let w = fleet_w(f).await;
    let (ok, all, secs) = converge(
        f,
        Duration::from_secs(w + 90),
        |a| a.cached_version(&name).as_deref() == Some(v.as_str()),
        |m| m.read(&name).as_deref() == Some("during-the-gap"),
    )
    .await;
    let u = f.meter.since(t0);
    let met = ok == all && u.throttled == 0;
    let text = format!(
        "the change was written while every agent's watch missed it, then 410 Gone on every watch: {ok}/{all} nodes got it after the re-read{} (W = {w} s); {}",
        secs.map(|s| format!(" in {s:.1} s")).unwrap_or_default(),
        window_text(&u, f.args.limit)
    );
    let _ = missed;
    row(
        "relist-410",
        met,
        text,
        json!({"seconds": secs, "nodes_done": ok, "max_10s": u.max_10s, "throttled": u.throttled}),
    )
}

async fn delete_disable(f: &Fleet) -> Value {
    let (dis, del) = (
        f.hot[4 % f.hot.len()].clone(),
        f.hot[5 % f.hot.len()].clone(),
    );
    let t0 = Instant::now();
    let _ = f.emu.disable_secret(&dis);
    let _ = f.emu.delete_secret(&del);
    lock(&f.removed).extend([dis.clone(), del.clone()]);
    let _ = published(f, Duration::from_secs(60), |n| {
        !n.secrets.keys().any(|k| k.as_str() == del)
    })
    .await;
    let w = fleet_w(f).await;
    let (ok, all, secs) = converge(
        f,
        Duration::from_secs(w + 90),
        |a| a.cached_version(&dis).is_none() && a.cached_version(&del).is_none(),
        |m| m.read(&dis).is_none() && m.read(&del).is_none(),
    )
    .await;
    let u = f.meter.since(t0);
    let target = f.args.watch_interval + w + 5;
    let met = secs.is_some_and(|s| s <= target as f64) && u.throttled == 0;
    let text = format!(
        "one disabled, one deleted: gone from {ok}/{all} nodes{}; target watcher interval + W + 5 s = {target} s; {}",
        secs.map(|s| format!(" after {s:.1} s")).unwrap_or_default(),
        window_text(&u, f.args.limit)
    );
    row(
        "delete-disable",
        met,
        text,
        json!({"seconds": secs, "w": w, "nodes_done": ok, "max_10s": u.max_10s, "throttled": u.throttled}),
    )
}

async fn restart(f: &Fleet) -> Value {
    let n = f.args.restart.min(f.args.agents);
    let t0 = Instant::now();
    {
        let mut agents = f.agents.lock().await;
        for a in agents.drain(..n) {
            a.stop();
        }
    }
    let result = f.start_agents(n, n).await;
    let secs = t0.elapsed().as_secs_f64();
    let started = match result {
        Ok(list) => {
            let k = list.len();
            f.agents.lock().await.extend(list);
            k
        }
        Err(e) => {
            return row(
                "restart",
                false,
                format!("restarting {n} nodes failed: {e}"),
                json!({}),
            )
        }
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let u = f.meter.since(t0);
    let listed = f
        .agents
        .lock()
        .await
        .iter()
        .rev()
        .take(n)
        .filter(|a| a.listed)
        .count();
    let node_lists = listed;
    let met = u.max_10s <= u64::from(f.args.limit) && u.throttled == 0;
    let text = format!(
        "{started} nodes restarted at once, each starting from the notice and reading its secrets, all serving after {secs:.1} s; {} calls, of which {node_lists} of them listed the vault (no usable notice); {}",
        u.calls,
        window_text(&u, f.args.limit)
    );
    row(
        "restart",
        met,
        text,
        json!({"seconds": secs, "calls": u.calls, "nodes_listing": node_lists, "max_10s": u.max_10s, "throttled": u.throttled}),
    )
}

/// Someone with write access to the notice writes a newer `updated` for one secret, the vault
/// unchanged; the leader puts the true content back at its next listing.
async fn forged(f: &Fleet) -> Value {
    let name = f.hot[0].clone();
    let forged = f.procs.notice_data().and_then(|d| {
        let mut secrets: Value = serde_json::from_str(d["secrets"].as_str()?).ok()?;
        let updated = secrets[&name]["updated"].as_i64()?;
        secrets[&name]["updated"] = json!(updated + 1000);
        Some(secrets.to_string())
    });
    let Some(forged) = forged else {
        return row("forged", false, "no notice to forge from".into(), json!({}));
    };
    let real_before: Vec<Option<String>> = f.procs.mounts.iter().map(|m| m.read(&name)).collect();
    let before: Vec<Option<String>> = f
        .agents
        .lock()
        .await
        .iter()
        .map(|a| a.cached_version(&name))
        .collect();
    let gets0 = f.emu.counts().get("get_secret");
    let t0 = Instant::now();
    if !f.procs.forge(&forged) {
        return row(
            "forged",
            false,
            "the fake refused the forged write".into(),
            json!({}),
        );
    }
    let w = fleet_w(f).await;
    tokio::time::sleep(Duration::from_secs(w + 10)).await;
    let agents = f.agents.lock().await;
    let after: Vec<Option<String>> = agents.iter().map(|a| a.cached_version(&name)).collect();
    let real_after: Vec<Option<String>> = f.procs.mounts.iter().map(|m| m.read(&name)).collect();
    let gets = f.emu.counts().get("get_secret") - gets0;
    let nodes = agents.len() + f.procs.mounts.len();
    let same = before == after && real_before == real_after;
    let u = f.meter.since(t0);
    let met = gets <= nodes as u64 && same && u.throttled == 0;
    let text = format!(
        "a forged newer version of one secret written to the ConfigMap: {gets} GETs across {nodes} nodes ({:.2} per node), values unchanged (agents and real mounts): {same}; {}",
        gets as f64 / nodes.max(1) as f64,
        window_text(&u, f.args.limit)
    );
    row(
        "forged",
        met,
        text,
        json!({"gets": gets, "nodes": nodes, "unchanged": same, "max_10s": u.max_10s, "throttled": u.throttled}),
    )
}

/// Waits until no call has been made for a full 10 s window, so each scenario starts clean.
async fn quiet(f: &Fleet) {
    tokio::time::sleep(Duration::from_secs(11)).await;
    let _ = f;
}

pub async fn run_all(f: &Fleet) -> Vec<Value> {
    let only: Option<Vec<String>> = f
        .args
        .only
        .as_ref()
        .map(|s| s.split(',').map(str::to_string).collect());
    let wants = |n: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == n));
    let mut rows = Vec::new();
    if wants("steady") {
        rows.push(steady(f).await);
    }
    if wants("one") {
        rows.push(rotation(f, "one-rotation", &f.hot[..1], 5).await);
        quiet(f).await;
    }
    if wants("k") {
        let k = f.args.k.min(f.hot.len());
        rows.push(rotation(f, &format!("{k}-rotations"), &f.hot[..k], 5).await);
        quiet(f).await;
    }
    if wants("leader-kill") {
        rows.push(leader_kill(f).await);
        quiet(f).await;
    }
    if wants("relist") {
        rows.push(relist(f).await);
        quiet(f).await;
    }
    if wants("forged") {
        rows.push(forged(f).await);
        quiet(f).await;
    }
    if wants("delete") {
        rows.push(delete_disable(f).await);
        quiet(f).await;
    }
    if wants("restart") {
        rows.push(restart(f).await);
    }
    rows
}
