//! Figure 7: resident memory of the akvfs process with 1,000 cached 1 KiB secrets, before and
//! after a soak in which a few secrets rotate continuously and every secret is read over and
//! over. VmRSS comes from /proc/PID/status.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::load;
use crate::report::{Row, Section};
use crate::rig::{self, Akvfs, ProcStatus, Result, Vault};
use crate::stats::{round, slope};
use crate::Ctx;

const SECRETS: usize = 1000;
const SIZE: usize = 1024;
/// Secrets rotated during the soak, one new version every `ROTATE_EVERY`, round robin.
const ROTATING: usize = 5;
const ROTATE_EVERY: Duration = Duration::from_millis(250);
/// "No growth": RSS may rise this much over the whole soak (the allocator settling in) ...
const GROWTH_TOLERANCE_KIB: i64 = 1024;
/// ... and only this much over its second half (growth that keeps going is a leak).
const LATE_GROWTH_TOLERANCE_KIB: i64 = 256;
const GOAL_KIB: u64 = 24 * 1024;
const FLAGS: [&str; 4] = ["--refresh-interval", "2s", "--max-requests-per-10s", "1000"];

pub fn soak(ctx: &Ctx) -> Result<Section> {
    let files = rig::secrets("m-", SECRETS, SIZE);
    let vault = Vault::start(&files)?;
    vault.settle();
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("memory-akvfs")?, &FLAGS)?;
    for _ in 0..2 {
        for (name, v) in &files {
            if load::read_file(&m.file(name)).as_deref() != Some(v.as_bytes()) {
                return Err(format!("{name} does not read its exact bytes"));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let before = m.status()?;
    eprintln!(
        "e2e: memory: VmRSS {} KiB with {SECRETS} cached secrets; soaking for {:?}",
        before.vm_rss, ctx.plan.soak
    );

    vault.emu.reset_counts();
    let stop = AtomicBool::new(false);
    let rotations = AtomicU64::new(0);
    let (passes, wrong) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let soak = ctx.plan.soak;
    let mut samples: Vec<(f64, u64)> = vec![(0.0, before.vm_rss)];
    let rotate_err: Option<String> = std::thread::scope(|s| {
        let rotator = s.spawn(|| -> Option<String> {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < soak {
                let name = &files[k % ROTATING].0;
                if let Err(e) = vault.put(name, &rig::value(&format!("{name}-r{k}"), SIZE)) {
                    return Some(e);
                }
                rotations.fetch_add(1, Ordering::Relaxed);
                k += 1;
                std::thread::sleep(ROTATE_EVERY);
            }
            None
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) && start.elapsed() < soak {
                for (i, (name, v)) in files.iter().enumerate() {
                    let got = load::read_file(&m.file(name));
                    let ok = match &got {
                        Some(b) if i < ROTATING => {
                            b.len() == SIZE && b.starts_with(name.as_bytes())
                        }
                        Some(b) => b == v.as_bytes(),
                        None => false,
                    };
                    if !ok {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
                passes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut next_report = Duration::from_secs(60);
        while start.elapsed() < soak {
            std::thread::sleep(Duration::from_secs(5).min(soak.saturating_sub(start.elapsed())));
            if let Ok(st) = m.status() {
                samples.push((start.elapsed().as_secs_f64(), st.vm_rss));
            }
            if start.elapsed() >= next_report {
                eprintln!(
                    "e2e: memory: {:.0} s, VmRSS {} KiB",
                    start.elapsed().as_secs_f64(),
                    samples.last().map(|x| x.1).unwrap_or(0)
                );
                next_report += Duration::from_secs(60);
            }
        }
        stop.store(true, Ordering::Relaxed);
        rotator.join().unwrap_or(None)
    });
    if let Some(e) = rotate_err {
        return Err(e);
    }
    let soak_counts = vault.emu.counts();
    // Let the last rotations land, then touch everything once more.
    std::thread::sleep(Duration::from_secs(5));
    for (name, v) in files.iter().skip(ROTATING) {
        if load::read_file(&m.file(name)).as_deref() != Some(v.as_bytes()) {
            wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    let after: ProcStatus = m.status()?;
    samples.push((start.elapsed().as_secs_f64(), after.vm_rss));

    let half = samples.len() / 2;
    let (xs, ys): (Vec<f64>, Vec<f64>) = samples[half..]
        .iter()
        .map(|(t, r)| (*t / 60.0, *r as f64))
        .unzip();
    let slope_kib_per_min = slope(&xs, &ys);
    let growth = after.vm_rss as i64 - before.vm_rss as i64;
    let late_growth = after.vm_rss as i64 - samples[half].1 as i64;
    let max_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let wrong = wrong.load(Ordering::Relaxed);
    let under = before.vm_rss <= GOAL_KIB && after.vm_rss <= GOAL_KIB;
    let flat = growth <= GROWTH_TOLERANCE_KIB && late_growth <= LATE_GROWTH_TOLERANCE_KIB;
    let mib = |k: u64| k as f64 / 1024.0;
    let rows = vec![Row::new(
        format!("RSS, {SECRETS} cached 1 KiB secrets, {:.0} s soak", soak.as_secs_f64()),
        format!(
            "{:.1} MiB before (anon {:.1}), {:.1} MiB after (anon {:.1}); {growth:+} KiB in all, {late_growth:+} KiB over the second half{}",
            mib(before.vm_rss),
            mib(before.rss_anon),
            mib(after.vm_rss),
            mib(after.rss_anon),
            if wrong > 0 { format!(" [{wrong} WRONG READS]") } else { String::new() }
        ),
    )
    .goal(
        "<= 24 MiB; no growth: <= +1 MiB in all, <= +256 KiB over the second half",
        under && flat && wrong == 0,
    )];
    let json = json!({
        "secrets": SECRETS,
        "secret_size": SIZE,
        "flags": FLAGS,
        "soak_s": round(soak.as_secs_f64(), 0),
        "rotating_secrets": ROTATING,
        "rotation_every_ms": ROTATE_EVERY.as_millis() as u64,
        "rotations": rotations.load(Ordering::Relaxed),
        "read_passes": passes.load(Ordering::Relaxed),
        "wrong_reads": wrong,
        "before": before.json(),
        "after": after.json(),
        "growth_kib": growth,
        "growth_second_half_kib": late_growth,
        "max_vm_rss_kib": max_rss,
        "slope_kib_per_min_second_half": round(slope_kib_per_min, 2),
        "vm_rss_samples": samples.iter().map(|(t, r)| json!([round(*t, 1), r])).collect::<Vec<_>>(),
        "vault_calls_during_soak": soak_counts.nonzero(),
        "pass_under_24_mib": under,
        "pass_no_growth": flat,
    });
    Ok(Section {
        key: "memory",
        json,
        rows,
    })
}
