//! Figures about calls to the vault: cold-read latency against a direct SDK GET (4), 64
//! concurrent cold readers of one secret (6), and the steady-state cost of 100 hot, unchanged
//! secrets (8). Call counts come from the emulator's counters.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use akvfs_emulator::{Fault, Operation};
use serde_json::json;

use crate::load;
use crate::report::{Row, Section};
use crate::rig::{self, Akvfs, Result, Vault};
use crate::sdk::DirectClient;
use crate::stats::{round, Spread};
use crate::Ctx;

fn check(got: Option<Vec<u8>>, want: &str, what: &str) -> Result<()> {
    if got.as_deref() == Some(want.as_bytes()) {
        Ok(())
    } else {
        Err(format!("{what} did not read its exact bytes"))
    }
}

/// A cold-read latency row: akvfs's p50 and p99 against the direct SDK GET's (`what` says
/// which GET, after "direct SDK GET").
pub fn against_sdk(figure: &str, f: &Spread, what: &str, s: &Spread) -> Row {
    Row::new(figure, format!("p50 {:.0} / p99 {:.0} µs", f.p50, f.p99))
        .baseline(format!(
            "direct SDK GET{what} p50 {:.0} / p99 {:.0} µs",
            s.p50, s.p99
        ))
        .ratio(if s.p50 > 0.0 { f.p50 / s.p50 } else { 0.0 })
}

/// Figure 4: the first read of a secret with nothing cached, through akvfs and through a direct
/// SDK GET, alternating which goes first.
pub fn cold(ctx: &Ctx) -> Result<Section> {
    let n = ctx.plan.cold_samples;
    let warmups = 2;
    let files = rig::secrets("c-", n + warmups, 100);
    let vault = Vault::start(&files)?;
    vault.settle();
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("cold-akvfs")?, &[])?;
    let sdk = DirectClient::new(vault.emu.info(), vault.emu.ca_pem())?;
    // Both sides get their access token and their connection before anything is timed.
    for (name, v) in &files[n..] {
        check(load::read_file(&m.file(name)), v, name)?;
        if sdk.get(name)? != *v {
            return Err(format!("the SDK read a wrong value for {name}"));
        }
    }
    vault.emu.reset_counts();
    let (mut fs_us, mut sdk_us) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, (name, v)) in files[..n].iter().enumerate() {
        for step in 0..2 {
            if (step == 0) == (i % 2 == 0) {
                let t = Instant::now();
                let got = load::read_file(&m.file(name));
                fs_us.push(t.elapsed().as_secs_f64() * 1e6);
                check(got, v, name)?;
            } else {
                let t = Instant::now();
                let got = sdk.get(name)?;
                sdk_us.push(t.elapsed().as_secs_f64() * 1e6);
                if got != *v {
                    return Err(format!("the SDK read a wrong value for {name}"));
                }
            }
        }
    }
    let c = vault.emu.counts();
    let fs_gets = c.get("get_secret").saturating_sub(n as u64);
    let tokens = vault.token_requests();
    let (f, s) = (Spread::of(&fs_us), Spread::of(&sdk_us));
    let gets_per_read = fs_gets as f64 / n as f64;
    let rows = vec![
        against_sdk("cold read (first read, nothing cached)", &f, "", &s),
        Row::new("vault GETs per cold read", format!("{gets_per_read:.2}"))
            .goal("1", fs_gets == n as u64),
    ];
    let json = json!({
        "samples": n,
        "akvfs_us": f.json(),
        "sdk_get_us": s.json(),
        "p50_overhead_us": round(f.p50 - s.p50, 1),
        "p50_ratio": round(if s.p50 > 0.0 { f.p50 / s.p50 } else { 0.0 }, 3),
        "akvfs_gets": fs_gets,
        "akvfs_gets_per_cold_read": round(gets_per_read, 3),
        "token_requests_during_samples": tokens,
        "vault_calls": c.nonzero(),
    });
    Ok(Section {
        key: "cold_read",
        json,
        rows,
    })
}

/// Figure 6: 64 readers open the same cold secret at once while each vault GET takes 300 ms.
pub fn herd(ctx: &Ctx) -> Result<Section> {
    const READERS: usize = 64;
    const DELAY: Duration = Duration::from_millis(300);
    let rounds = ctx.plan.herd_rounds;
    let files = rig::secrets("h-", rounds, 1024);
    let vault = Vault::start(&files)?;
    vault.settle();
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("herd-akvfs")?, &[])?;
    let mut per_round = Vec::new();
    for (name, v) in &files {
        vault
            .emu
            .inject_fault(Fault::latency(DELAY).for_operation(Operation::GetSecret))
            .map_err(|e| format!("the emulator refused the latency fault: {e}"))?;
        vault.emu.reset_counts();
        let barrier = Barrier::new(READERS);
        let path = m.file(name);
        let start = Instant::now();
        let results: Vec<(bool, f64)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..READERS)
                .map(|_| {
                    let (barrier, path) = (&barrier, &path);
                    s.spawn(move || {
                        barrier.wait();
                        let t = Instant::now();
                        let ok = load::read_file(path).as_deref() == Some(v.as_bytes());
                        (ok, t.elapsed().as_secs_f64() * 1e3)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or((false, 0.0)))
                .collect()
        });
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        vault.emu.clear_faults();
        let gets = vault.count("get_secret");
        let wrong = results.iter().filter(|(ok, _)| !ok).count();
        let lat: Vec<f64> = results.iter().map(|(_, ms)| *ms).collect();
        per_round.push((gets, wrong, wall_ms, Spread::of(&lat)));
    }
    let all_one = per_round.iter().all(|(g, w, _, _)| *g == 1 && *w == 0);
    let gets: Vec<u64> = per_round.iter().map(|r| r.0).collect();
    let wrong: usize = per_round.iter().map(|r| r.1).sum();
    let rows = vec![Row::new(
        "64 concurrent cold readers of one secret",
        format!(
            "GETs per round {gets:?}; {wrong} wrong reads; slowest reader {:.0} ms (GET delayed {} ms)",
            per_round.iter().map(|r| r.3.max).fold(0.0, f64::max),
            DELAY.as_millis()
        ),
    )
    .goal("exactly 1 GET", all_one)];
    let json = json!({
        "readers": READERS,
        "get_latency_ms": DELAY.as_millis() as u64,
        "rounds": per_round.iter().map(|(g, w, wall, s)| json!({
            "gets": g, "wrong_reads": w, "wall_ms": round(*wall, 1), "reader_ms": s.json(),
        })).collect::<Vec<_>>(),
        "pass": all_one,
    });
    Ok(Section {
        key: "concurrent_cold_readers",
        json,
        rows,
    })
}

/// Figure 8: 100 secrets read over and over, never changed, at `--refresh-interval 1s`. The
/// emulator's counters are polled every 10 ms; each refresh cycle shows as a burst of calls,
/// bursts more than 300 ms apart are separate cycles, and only cycles wholly inside the window
/// are counted.
pub fn hot(ctx: &Ctx) -> Result<Section> {
    const SECRETS: usize = 100;
    let files = rig::secrets("hot-", SECRETS, 100);
    let vault = Vault::start(&files)?;
    vault.settle();
    let m = Akvfs::mount(
        &ctx.bin,
        &vault,
        &ctx.work.dir("hot-akvfs")?,
        &["--refresh-interval", "1s"],
    )?;
    let read_all = || -> Result<()> {
        for (name, v) in &files {
            check(load::read_file(&m.file(name)), v, name)?;
        }
        Ok(())
    };
    read_all()?;
    std::thread::sleep(Duration::from_millis(2500));
    let window = ctx.plan.hot_window;
    vault.emu.reset_counts();
    let start = Instant::now();
    // (seconds since start, list calls, GETs, other vault calls, token calls) per change seen
    let mut events: Vec<(f64, u64, u64, u64, u64)> = Vec::new();
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut passes = 0u64;
    let mut tick = 0u64;
    while start.elapsed() < window {
        if tick.is_multiple_of(10) {
            read_all()?;
            passes += 1;
        }
        tick += 1;
        let c = vault.emu.counts();
        let (l, g) = (c.get("list_secrets"), c.get("get_secret"));
        let other = c.vault_requests() - l - g + c.get("faulted") + c.get("throttled");
        let tok = vault.token_requests();
        let now = (l, g, other, tok);
        if now != last {
            events.push((
                start.elapsed().as_secs_f64(),
                l - last.0,
                g - last.1,
                other - last.2,
                tok - last.3,
            ));
            last = now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let span = start.elapsed().as_secs_f64();
    // Group into bursts.
    let mut bursts: Vec<(f64, f64, u64, u64)> = Vec::new(); // start, end, lists, gets
    for (t, l, g, _, _) in &events {
        match bursts.last_mut() {
            Some(b) if *t - b.1 < 0.3 => {
                b.1 = *t;
                b.2 += l;
                b.3 += g;
            }
            _ => bursts.push((*t, *t, *l, *g)),
        }
    }
    let complete: Vec<&(f64, f64, u64, u64)> = bursts
        .iter()
        .filter(|b| b.0 > 0.1 && b.1 < span - 0.1)
        .collect();
    let lists_per_cycle: Vec<u64> = complete.iter().map(|b| b.2).collect();
    let (lists, gets, other, tokens) = last;
    let pass =
        gets == 0 && other == 0 && complete.len() >= 3 && lists_per_cycle.iter().all(|&l| l == 4);
    let rows = vec![Row::new(
        "100 hot unchanged secrets, --refresh-interval 1s",
        format!(
            "{} whole cycles in {span:.1} s, list calls per cycle {}-{}, {gets} GETs, {other} other vault calls",
            complete.len(),
            lists_per_cycle.iter().min().copied().unwrap_or(0),
            lists_per_cycle.iter().max().copied().unwrap_or(0),
        ),
    )
    .goal("4 list calls per interval, 0 GETs", pass)];
    let json = json!({
        "secrets": SECRETS,
        "refresh_interval_s": 1,
        "window_s": round(span, 2),
        "read_passes": passes,
        "whole_cycles": complete.len(),
        "list_calls_per_cycle": lists_per_cycle,
        "cycle_starts_s": complete.iter().map(|b| round(b.0, 3)).collect::<Vec<_>>(),
        "list_calls": lists,
        "get_calls": gets,
        "other_vault_calls": other,
        "token_calls": tokens,
        "pass": pass,
    });
    Ok(Section {
        key: "hot_unchanged",
        json,
        rows,
    })
}
