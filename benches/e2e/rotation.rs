//! Figure 5, rotation lag: the time from the emulator's `set_secret` returning to the new bytes
//! being readable through the mount; and the vault-outage scenario: cached bytes served
//! throughout, the calls made meanwhile, and how soon a change made during the outage shows
//! once the vault answers again.

use std::time::{Duration, Instant};

use akvfs_emulator::Fault;
use serde_json::json;

use crate::load;
use crate::report::{Row, Section};
use crate::rig::{self, Akvfs, Result, Vault};
use crate::stats::{median, round};
use crate::Ctx;

/// When, relative to the refresher's cycle, each rotation is made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// After a random pause of 0 to 1.1 intervals: an unbiased sample of lags.
    Random,
    /// Right after the previous rotation was seen, that is right after a refresh cycle: the
    /// worst phase, so the lag is about one whole (jittered) interval.
    AfterCycle,
}

/// Rotates `name` `samples` times; each lag in seconds, or None when the new bytes did not
/// show within 1.1 intervals + 15 s.
fn lags(
    vault: &Vault,
    m: &Akvfs,
    name: &str,
    interval: Duration,
    samples: usize,
    phase: Phase,
) -> Result<Vec<Option<f64>>> {
    let limit = interval.mul_f64(1.1) + Duration::from_secs(15);
    let path = m.file(name);
    let mut out = Vec::with_capacity(samples);
    // One unrecorded rotation first: it puts the phase where `AfterCycle` wants it.
    for k in 0..=samples {
        if phase == Phase::Random && k > 0 {
            std::thread::sleep(interval.mul_f64(fastrand::f64() * 1.1));
        }
        let v = rig::value(&format!("{name}-v{k}"), 100);
        vault.put(name, &v)?;
        let seen = rig::wait_for(limit, Duration::from_millis(5), || {
            load::read_file(&path).as_deref() == Some(v.as_bytes())
        });
        if k > 0 {
            out.push(seen.map(|d| d.as_secs_f64()));
            eprintln!("e2e: rotation lag sample {k}/{samples}: {seen:?}");
        }
    }
    Ok(out)
}

fn lag_row(
    figure: &str,
    goal_s: f64,
    phase_note: &str,
    lags: &[Option<f64>],
) -> (Row, serde_json::Value) {
    let seen: Vec<f64> = lags.iter().flatten().copied().collect();
    let missing = lags.len() - seen.len();
    let p50 = median(&seen);
    let max = seen.iter().copied().fold(0.0, f64::max);
    let pass = missing == 0 && !seen.is_empty() && max <= goal_s;
    let mut text = format!(
        "p50 {p50:.2} s, max {max:.2} s ({} samples, {phase_note})",
        lags.len()
    );
    if missing > 0 {
        text.push_str(&format!(" [{missing} NEVER SEEN]"));
    }
    let row = Row::new(figure, text).goal(format!("<= {goal_s:.0} s"), pass);
    let json = json!({
        "samples_s": lags.iter().map(|l| l.map(|x| round(x, 3))).collect::<Vec<_>>(),
        "p50_s": round(p50, 3),
        "max_s": round(max, 3),
        "never_seen": missing,
        "goal_max_s": goal_s,
        "pass": pass,
    });
    (row, json)
}

fn rotation_at(
    ctx: &Ctx,
    key: &'static str,
    interval: Duration,
    flags: &[&str],
    samples: usize,
    phase: Phase,
) -> Result<Section> {
    let files = vec![("rot".to_string(), rig::value("rot", 100))];
    let vault = Vault::start(&files)?;
    vault.settle();
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir(key)?, flags)?;
    if load::read_file(&m.file("rot")).as_deref() != Some(files[0].1.as_bytes()) {
        return Err("rot does not read its exact bytes".into());
    }
    let l = lags(&vault, &m, "rot", interval, samples, phase)?;
    let secs = interval.as_secs_f64();
    let (figure, note) = if phase == Phase::Random {
        (
            format!("rotation lag, --refresh-interval {secs:.0}s"),
            "random phase",
        )
    } else {
        (
            format!("rotation lag, default interval ({secs:.0} s)"),
            "worst phase: PUT right after a cycle",
        )
    };
    // Goals: 2 s at a 1 s interval, the interval + 1 s at the default.
    let (row, mut json) = lag_row(&figure, secs + 1.0, note, &l);
    json["refresh_interval_s"] = json!(secs);
    json["flags"] = json!(flags);
    json["phase"] = json!(note);
    Ok(Section {
        key,
        json,
        rows: vec![row],
    })
}

/// Rotation lag at `--refresh-interval 1s` (goal: at most 2 s).
pub fn fast(ctx: &Ctx) -> Result<Section> {
    rotation_at(
        ctx,
        "rotation_lag_1s",
        Duration::from_secs(1),
        &["--refresh-interval", "1s"],
        ctx.plan.rotation_fast_samples,
        Phase::Random,
    )
}

/// Rotation lag at the default interval, 30 s (goal: at most 31 s).
pub fn default_interval(ctx: &Ctx) -> Result<Section> {
    rotation_at(
        ctx,
        "rotation_lag_default",
        Duration::from_secs(30),
        &[],
        ctx.plan.rotation_default_samples,
        Phase::AfterCycle,
    )
}

/// The vault answers 503 to everything for the outage; cached secrets are read every second.
pub fn outage(ctx: &Ctx) -> Result<Section> {
    let interval = ctx.plan.outage_interval;
    let dur = ctx.plan.outage;
    let files = rig::secrets("o-", 50, 100);
    let vault = Vault::start(&files)?;
    vault.settle();
    let interval_flag = format!("{}s", interval.as_secs());
    let flags = ["--refresh-interval", interval_flag.as_str()];
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("outage-akvfs")?, &flags)?;
    for (name, v) in &files {
        if load::read_file(&m.file(name)).as_deref() != Some(v.as_bytes()) {
            return Err(format!("{name} does not read its exact bytes"));
        }
    }
    std::thread::sleep(Duration::from_secs(1));

    vault
        .emu
        .inject_fault(Fault::status(503))
        .map_err(|e| format!("the emulator refused the 503 fault: {e}"))?;
    vault.emu.reset_counts();
    let start = Instant::now();
    let (rot_name, rot_value) = ("o-0000", rig::value("o-0000-after", 100));
    let mut rotated = false;
    let (mut reads, mut wrong, mut failed, mut passes) = (0u64, 0u64, 0u64, 0u64);
    while start.elapsed() < dur {
        for (name, v) in &files {
            match load::read_file(&m.file(name)) {
                Some(got) if got == v.as_bytes() => {}
                Some(_) => wrong += 1,
                None => failed += 1,
            }
            reads += 1;
        }
        passes += 1;
        // A change made while the vault is down, to time the recovery with.
        if !rotated && start.elapsed() + Duration::from_secs(2) >= dur {
            vault.put(rot_name, &rot_value)?;
            rotated = true;
        }
        std::thread::sleep(Duration::from_secs(1).min(dur.saturating_sub(start.elapsed())));
    }
    if !rotated {
        vault.put(rot_name, &rot_value)?;
    }
    let outage_s = start.elapsed().as_secs_f64();
    let c = vault.emu.counts();
    let calls = c.get("total");
    vault.emu.clear_faults();
    let recovery = rig::wait_for(
        interval * 3 + Duration::from_secs(10),
        Duration::from_millis(20),
        || load::read_file(&m.file(rot_name)).as_deref() == Some(rot_value.as_bytes()),
    )
    .map(|d| d.as_secs_f64());
    let mut wrong_after = 0;
    for (name, v) in files.iter().skip(1) {
        if load::read_file(&m.file(name)).as_deref() != Some(v.as_bytes()) {
            wrong_after += 1;
        }
    }
    let intervals = outage_s / interval.as_secs_f64();
    let per_interval = calls as f64 / intervals;
    let served = wrong == 0 && failed == 0 && wrong_after == 0;
    let recovered = recovery.is_some_and(|r| r <= interval.as_secs_f64());
    let no_storm = per_interval <= 1.5;
    let rows = vec![Row::new(
        format!(
            "vault down {:.0} s (503), --refresh-interval {}",
            outage_s, interval_flag
        ),
        format!(
            "{reads} cached reads: {wrong} wrong, {failed} failed; {calls} vault calls ({per_interval:.2} per interval); recovery {}",
            recovery.map(|r| format!("{r:.2} s")).unwrap_or_else(|| "NEVER".into())
        ),
    )
    .goal(
        format!("exact bytes; <= 1.5 calls per interval; recovery <= {} s", interval.as_secs()),
        served && recovered && no_storm,
    )];
    let json = json!({
        "outage_s": round(outage_s, 1),
        "refresh_interval_s": interval.as_secs(),
        "cached_secrets": files.len(),
        "read_passes": passes,
        "reads": reads,
        "wrong_reads": wrong,
        "failed_reads": failed,
        "wrong_reads_after_recovery": wrong_after,
        "vault_calls_during_outage": calls,
        "vault_calls_by_kind": c.nonzero(),
        "calls_per_interval": round(per_interval, 3),
        "recovery_s": recovery.map(|r| round(r, 3)),
        "pass_served": served,
        "pass_recovery": recovered,
        "pass_no_storm": no_storm,
    });
    Ok(Section {
        key: "outage",
        json,
        rows,
    })
}
