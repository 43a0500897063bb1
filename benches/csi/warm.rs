//! Warm open+read+close through a CSI target path, against a tmpfs holding the same files and
//! against the hostPath mode's `akvfs mount` of the same vault, in the same interleaved rounds.
//! The goal is the hostPath mode's ratio to tmpfs: the target path is a bind of the identity's
//! FUSE mount, so once warm it should cost what a plain mount costs.

use serde_json::{json, Value};

use crate::kubelet::{Ident, Plugin};
use crate::load::{self, FileSet, Op};
use crate::report::{Row, Section};
use crate::rig::{self, Akvfs, Result, Tmpfs, Vault};
use crate::stats::{median, round, thousands};
use crate::Ctx;

const FILES: usize = 1000;
const SIZE: usize = 100;
const MAX_OPS: u64 = 8_000_000;
/// The CSI ratio may be this much below the hostPath mode's and still count as the same.
const TOLERANCE: f64 = 0.95;
/// The first three make the figure; the last two split a gap between the CSI target and the
/// hostPath mount into its causes: the identity mount read directly (no bind, same process as
/// the target), a hostPath mount with `allow_other` (the CSI mount's ACL, no bind) and a
/// hostPath mount with glibc's mapping threshold fixed as the plugin fixes it (`csi::heap`).
const TARGETS: [&str; 6] = [
    "tmpfs",
    "csi",
    "hostpath",
    "csi-direct",
    "hostpath-allow-other",
    "hostpath-mmap-threshold",
];

#[derive(Clone, Copy, Default)]
struct Sample {
    ops: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let files = rig::secrets("w-", FILES, SIZE);
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let vault = Vault::start(&files)?;
    vault.settle();
    let ident = Ident::add(&vault, 0)?;
    let mut plugin = Plugin::start(&ctx.bin, &vault, &ctx.work.dir("warm-csi")?)?;
    let pod = plugin.pod(&ident)?;
    plugin.publish(&vault, &pod, &[])?;
    let host = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("warm-hostpath")?, &[])?;
    let other = Akvfs::mount(
        &ctx.bin,
        &vault,
        &ctx.work.dir("warm-hostpath-other")?,
        &["-o", "allow_other"],
    )?;
    // The same setting the plugin makes with mallopt, through glibc's tunable; the variable
    // reaches only the child spawned while it is set.
    std::env::set_var("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576");
    let mapped = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("warm-hostpath-mmap")?, &[]);
    std::env::remove_var("GLIBC_TUNABLES");
    let mapped = mapped?;
    let tmp = Tmpfs::mount(&ctx.work.dir("warm-tmpfs")?, &files)?;
    let direct =
        plugin.identity_mounts().into_iter().next().ok_or_else(|| {
            "the plugin's identity mount is not in /proc/self/mountinfo".to_string()
        })?;
    let dirs = [
        tmp.path.clone(),
        pod.target.clone(),
        host.path.clone(),
        direct,
        other.path.clone(),
        mapped.path.clone(),
    ];
    for dir in &dirs {
        for (name, value) in &files {
            if load::read_file(&dir.join(name)).as_deref() != Some(value.as_bytes()) {
                return Err(format!(
                    "{} does not read its exact bytes",
                    dir.join(name).display()
                ));
            }
        }
    }
    let sets: Vec<FileSet> = dirs
        .iter()
        .map(|d| FileSet::new(d, &names, SIZE))
        .collect::<Result<_>>()?;

    vault.emu.reset_counts();
    let plan = &ctx.plan;
    let mut json_cases = serde_json::Map::new();
    let mut rows = Vec::new();
    for threads in [1usize, 2] {
        // samples[target][round]
        let mut samples = vec![Vec::new(); TARGETS.len()];
        for r in 0..plan.rounds {
            for k in 0..TARGETS.len() {
                let t = (k + r) % TARGETS.len();
                let res = load::run(&sets[t], Op::OpenAtReadClose, threads, plan.run, MAX_OPS);
                samples[t].push(Sample {
                    ops: res.ops_per_sec(),
                    p50: res.p50_us(),
                    p99: res.p99_us(),
                    errors: res.errors,
                });
            }
        }
        let ratio = |t: usize| -> Vec<f64> {
            (0..plan.rounds)
                .map(|r| samples[t][r].ops / samples[0][r].ops.max(1.0))
                .collect()
        };
        let (csi_ratios, host_ratios) = (ratio(1), ratio(2));
        let (csi_ratio, host_ratio) = (median(&csi_ratios), median(&host_ratios));
        let (direct_ratio, other_ratio) = (median(&ratio(3)), median(&ratio(4)));
        let mapped_ratio = median(&ratio(5));
        let med =
            |t: usize, f: fn(&Sample) -> f64| median(&samples[t].iter().map(f).collect::<Vec<_>>());
        // The verdict compares the two mounts round by round: each round measures them
        // minutes apart at most, so the machine's drift (which moves tmpfs as much as
        // either mount) cancels in their quotient.
        let paired: Vec<f64> = (0..plan.rounds)
            .map(|r| samples[1][r].ops / samples[2][r].ops.max(1.0))
            .collect();
        let paired_median = median(&paired);
        let errors: u64 = samples.iter().flatten().map(|s| s.errors).sum();
        let pass = paired_median >= TOLERANCE && errors == 0;
        rows.push(
            Row::new(
                format!(
                    "CSI target: warm open+read+close, {threads} thread{}",
                    if threads > 1 { "s" } else { "" }
                ),
                format!(
                    "{} ops/s, p50 {:.1} / p99 {:.1} µs (hostPath mount {:.3}x)",
                    thousands(med(1, |s| s.ops)),
                    med(1, |s| s.p50),
                    med(1, |s| s.p99),
                    host_ratio
                ),
            )
            .baseline(format!("tmpfs {} ops/s", thousands(med(0, |s| s.ops))))
            .ratio(csi_ratio)
            .goal(
                format!(
                    "CSI / hostPath, median over rounds, at least {TOLERANCE} (this run {paired_median:.3})"
                ),
                pass,
            ),
        );
        rows.push(Row::new(
            format!("(diagnostic) the same, {threads} thread(s): causes of a gap"),
            format!(
                "identity mount read directly (no bind) {direct_ratio:.3}x, hostPath mount with allow_other {other_ratio:.3}x, hostPath mount with the plugin's malloc threshold {mapped_ratio:.3}x"
            ),
        ));
        let per_target: Value = TARGETS
            .iter()
            .enumerate()
            .map(|(t, name)| {
                (
                    name.to_string(),
                    json!({
                        "ops_per_sec": round(med(t, |s| s.ops), 0),
                        "p50_us": round(med(t, |s| s.p50), 2),
                        "p99_us": round(med(t, |s| s.p99), 2),
                        "rounds_ops_per_sec": samples[t].iter().map(|s| round(s.ops, 0)).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        json_cases.insert(
            format!("open_read_close_{threads}t"),
            json!({
                "targets": per_target,
                "csi_ratio": round(csi_ratio, 3),
                "hostpath_ratio": round(host_ratio, 3),
                "csi_over_hostpath_rounds": paired.iter().map(|x| round(*x, 3)).collect::<Vec<_>>(),
                "csi_over_hostpath_median": round(paired_median, 3),
                "csi_direct_ratio": round(direct_ratio, 3),
                "hostpath_allow_other_ratio": round(other_ratio, 3),
                "hostpath_mmap_threshold_ratio": round(mapped_ratio, 3),
                "csi_ratio_rounds": csi_ratios.iter().map(|x| round(*x, 3)).collect::<Vec<_>>(),
                "hostpath_ratio_rounds": host_ratios.iter().map(|x| round(*x, 3)).collect::<Vec<_>>(),
                "errors": errors,
            }),
        );
    }
    let gets = vault.count("get_secret");
    rows.push(
        Row::new(
            "(also checked) warm reads through the CSI target cost no vault call",
            format!("{gets} GETs"),
        )
        .goal("0 GETs", gets == 0),
    );
    json_cases.insert("gets_during_warm_loops".into(), json!(gets));
    plugin.unpublish(&pod)?;
    Ok(Section {
        key: "csi_warm",
        rows,
        json: Value::Object(json_cases),
    })
}
