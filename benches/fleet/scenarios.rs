//! The scenarios, in order. Each prints one line: what it measured, the target, and whether
//! the measurement met it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use akvfs::sim::Notice;
use serde_json::{json, Value};

use super::agents::Agent;
use super::meter::Usage;
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

/// Waits until every agent satisfies `done`, at most `limit`; the seconds it took.
async fn converge(
    f: &Fleet,
    limit: Duration,
    done: impl Fn(&Agent) -> bool,
) -> (usize, usize, Option<f64>) {
    let t = Instant::now();
    loop {
        let agents = f.agents.lock().await;
        let ok = agents.iter().filter(|a| done(a)).count();
        if ok == agents.len() {
            return (ok, agents.len(), Some(t.elapsed().as_secs_f64()));
        }
        if t.elapsed() > limit {
            return (ok, agents.len(), None);
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
        match f.emu.set_secret(n, &format!("{n}-{}", fastrand::u64(..))) {
            Ok(v) => versions.push((n.clone(), v)),
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
    let (ok, all, secs) = converge(f, limit, |a| {
        versions
            .iter()
            .all(|(n, v)| a.cached_version(n).as_deref() == Some(v.as_str()))
    })
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
    // Kill the leader at once, before or while it lists; change another secret while no
    // replica leads.
    let leader = f.lease.holder();
    {
        let ws = f.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for w in ws.iter().filter(|w| Some(w.id) == leader) {
            w.killed.store(true, Ordering::Relaxed);
        }
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
    let (ok, all, secs) = converge(f, Duration::from_secs(w + 90), |a| {
        a.cached_version(&names[0]).as_deref() == Some(v1.as_str())
            && a.cached_version(&names[1]).as_deref() == Some(v2.as_str())
    })
    .await;
    let u = f.meter.since(t0);
    let _ = f.start_watcher();
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
    let w = fleet_w(f).await;
    let (ok, all, secs) = converge(f, Duration::from_secs(w + 90), |a| {
        a.cached_version(&name).as_deref() == Some(v.as_str())
    })
    .await;
    let u = f.meter.since(t0);
    let met = ok == all && u.throttled == 0;
    let text = format!(
        "the change was written while every watch missed it, then 410 Gone: {ok}/{all} nodes got it after the re-read{} (W = {w} s); {}",
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
    f.removed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend([dis.clone(), del.clone()]);
    let _ = published(f, Duration::from_secs(60), |n| {
        !n.secrets.keys().any(|k| k.as_str() == del)
    })
    .await;
    let w = fleet_w(f).await;
    let (ok, all, secs) = converge(f, Duration::from_secs(w + 90), |a| {
        a.cached_version(&dis).is_none() && a.cached_version(&del).is_none()
    })
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
    let (lists0, watcher0) = (f.emu.counts().get("list_secrets"), f.watcher_pages());
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
    let node_lists =
        (f.emu.counts().get("list_secrets") - lists0).saturating_sub(f.watcher_pages() - watcher0);
    let met = u.max_10s <= u64::from(f.args.limit) && u.throttled == 0;
    let text = format!(
        "{started} nodes restarted at once, each starting from the notice and reading its secrets, all serving after {secs:.1} s; {} calls, of which {node_lists} list pages by nodes; {}",
        u.calls,
        window_text(&u, f.args.limit)
    );
    row(
        "restart",
        met,
        text,
        json!({"seconds": secs, "calls": u.calls, "node_list_pages": node_lists, "max_10s": u.max_10s, "throttled": u.throttled}),
    )
}

async fn forged(f: &Fleet) -> Value {
    let name = f.hot[0].clone();
    let Some(mut n) = f.bus.current() else {
        return row("forged", false, "no notice to forge from".into(), json!({}));
    };
    let before: Vec<Option<String>> = f
        .agents
        .lock()
        .await
        .iter()
        .map(|a| a.cached_version(&name))
        .collect();
    let gets0: u64 = f
        .agents
        .lock()
        .await
        .iter()
        .map(|a| a.stats.get(&a.stats.gets))
        .sum();
    let t0 = Instant::now();
    if let Some(m) = n
        .secrets
        .iter_mut()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, m)| m)
    {
        m.updated += 1000;
    }
    n.listed_at = super::bus::unix_now();
    n.heartbeat = n.listed_at;
    f.bus.publish(n);
    let w = fleet_w(f).await;
    tokio::time::sleep(Duration::from_secs(w + 10)).await;
    let agents = f.agents.lock().await;
    let after: Vec<Option<String>> = agents.iter().map(|a| a.cached_version(&name)).collect();
    let gets: u64 = agents
        .iter()
        .map(|a| a.stats.get(&a.stats.gets))
        .sum::<u64>()
        - gets0;
    let same = before == after;
    let u = f.meter.since(t0);
    let met = gets <= agents.len() as u64 && same;
    let text = format!(
        "a forged newer version of one secret: {gets} GETs across {} nodes ({:.2} per node), values unchanged: {same}; {}",
        agents.len(),
        gets as f64 / agents.len().max(1) as f64,
        window_text(&u, f.args.limit)
    );
    row(
        "forged",
        met,
        text,
        json!({"gets": gets, "nodes": agents.len(), "unchanged": same, "max_10s": u.max_10s, "throttled": u.throttled}),
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
