//! Figures 1, 2, 3 and 9: warm open+read+close (1 and 2 threads), cached `stat` and a readdir
//! of 1,000 secrets, on akvfs, on akvfs with `--strict-open`, on a tmpfs holding the same files
//! and on the FUSE floor (see `floor`), all in the same rounds; plus open+isatty+read+close, the
//! calls CPython's `open()` makes. Each round runs every target once per workload, in an order
//! that rotates from round to round; a figure is the median over rounds, and a ratio is the
//! median of the per-round ratios (each run against the tmpfs run of the same round).

use serde_json::{json, Value};

use crate::floor::Floor;
use crate::load::{self, FileSet, Op, RunResult};
use crate::report::{Row, Section};
use crate::rig::{self, Akvfs, Result, Tmpfs, Vault};
use crate::stats::{median, round, thousands};
use crate::Ctx;

const FILES: usize = 1000;
const SIZE: usize = 100;
/// Upper bound on operations in one run, whatever its duration.
const MAX_OPS: u64 = 8_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Tmpfs,
    Akvfs,
    Floor,
    Strict,
}

impl Target {
    fn key(self) -> &'static str {
        match self {
            Target::Tmpfs => "tmpfs",
            Target::Akvfs => "akvfs",
            Target::Floor => "fuse_floor",
            Target::Strict => "akvfs_strict_open",
        }
    }
}

struct Case {
    key: &'static str,
    op: Op,
    threads: usize,
    targets: &'static [Target],
}

const CASES: [Case; 5] = [
    Case {
        key: "open_read_close_1t",
        op: Op::OpenReadClose,
        threads: 1,
        targets: &[Target::Tmpfs, Target::Akvfs, Target::Floor, Target::Strict],
    },
    Case {
        key: "open_read_close_2t",
        op: Op::OpenReadClose,
        threads: 2,
        targets: &[Target::Tmpfs, Target::Akvfs, Target::Floor, Target::Strict],
    },
    Case {
        key: "open_isatty_read_close_1t",
        op: Op::OpenIsattyReadClose,
        threads: 1,
        targets: &[Target::Tmpfs, Target::Akvfs, Target::Floor],
    },
    Case {
        key: "stat_1t",
        op: Op::Stat,
        threads: 1,
        targets: &[Target::Tmpfs, Target::Akvfs, Target::Floor],
    },
    Case {
        key: "readdir_1000_1t",
        op: Op::Readdir,
        threads: 1,
        targets: &[Target::Tmpfs, Target::Akvfs, Target::Floor],
    },
];

/// One run, reduced to what the report keeps.
#[derive(Clone, Copy, Debug)]
struct Sample {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

impl From<&RunResult> for Sample {
    fn from(r: &RunResult) -> Sample {
        Sample {
            ops_per_sec: r.ops_per_sec(),
            p50_us: r.p50_us(),
            p99_us: r.p99_us(),
            errors: r.errors,
        }
    }
}

/// Medians over rounds of one target in one case.
#[derive(Clone, Copy, Debug, Default)]
struct Figure {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn figure(samples: &[Sample]) -> Figure {
    let pick = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
    Figure {
        ops_per_sec: pick(|s| s.ops_per_sec),
        p50_us: pick(|s| s.p50_us),
        p99_us: pick(|s| s.p99_us),
        errors: samples.iter().map(|s| s.errors).sum(),
    }
}

fn describe(f: &Figure) -> String {
    let mut s = format!(
        "{} ops/s (p50 {:.1} / p99 {:.1} µs)",
        thousands(f.ops_per_sec),
        f.p50_us,
        f.p99_us
    );
    if f.errors > 0 {
        s.push_str(&format!(" [{} ERRORS]", f.errors));
    }
    s
}

fn describe_readdir(f: &Figure) -> String {
    let mut s = format!(
        "{} listings/s (p50 {:.0} / p99 {:.0} µs)",
        thousands(f.ops_per_sec),
        f.p50_us,
        f.p99_us
    );
    if f.errors > 0 {
        s.push_str(&format!(" [{} ERRORS]", f.errors));
    }
    s
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let plan = &ctx.plan;
    let files = rig::secrets("s-", FILES, SIZE);
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let vault = Vault::start(&files)?;
    vault.settle();
    let tmpfs = Tmpfs::mount(&ctx.work.dir("warm-tmpfs")?, &files)?;
    let akvfs = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("warm-akvfs")?, &[])?;
    let strict = Akvfs::mount(
        &ctx.bin,
        &vault,
        &ctx.work.dir("warm-strict")?,
        &["--strict-open"],
    )?;
    let floor = Floor::mount(&ctx.work.dir("warm-floor")?, &files)?;
    let roots = [&tmpfs.path, &akvfs.path, &strict.path, &floor.path];

    // Every byte checked on every mount, twice: the first pass also fills akvfs's caches.
    for _ in 0..2 {
        for (name, v) in &files {
            for root in roots {
                if load::read_file(&root.join(name)).as_deref() != Some(v.as_bytes()) {
                    return Err(format!(
                        "{} does not read its exact bytes",
                        root.join(name).display()
                    ));
                }
            }
        }
    }
    let sets = [
        FileSet::new(&tmpfs.path, &names, SIZE)?,
        FileSet::new(&akvfs.path, &names, SIZE)?,
        FileSet::new(&strict.path, &names, SIZE)?,
        FileSet::new(&floor.path, &names, SIZE)?,
    ];
    let set_of = |t: Target| match t {
        Target::Tmpfs => &sets[0],
        Target::Akvfs => &sets[1],
        Target::Strict => &sets[2],
        Target::Floor => &sets[3],
    };

    let warmup = plan.run / 4;
    for case in &CASES {
        for t in case.targets {
            load::run(set_of(*t), case.op, case.threads, warmup, MAX_OPS);
        }
    }
    vault.emu.reset_counts();
    let started = std::time::Instant::now();

    // samples[case][target] over rounds
    let mut samples: Vec<Vec<Vec<Sample>>> = CASES
        .iter()
        .map(|c| vec![Vec::new(); c.targets.len()])
        .collect();
    for r in 0..plan.rounds {
        for (ci, case) in CASES.iter().enumerate() {
            let n = case.targets.len();
            for k in 0..n {
                let ti = (k + r) % n;
                let res = load::run(
                    set_of(case.targets[ti]),
                    case.op,
                    case.threads,
                    plan.run,
                    MAX_OPS,
                );
                samples[ci][ti].push(Sample::from(&res));
            }
        }
        eprintln!("e2e: warm: round {}/{} done", r + 1, plan.rounds);
    }
    let counts = vault.emu.counts();
    let measured_secs = started.elapsed().as_secs_f64();

    let mut json_cases = serde_json::Map::new();
    let mut rows = Vec::new();
    for (ci, case) in CASES.iter().enumerate() {
        let figs: Vec<Figure> = samples[ci].iter().map(|s| figure(s)).collect();
        let tm = &samples[ci][0];
        let mut obj = serde_json::Map::new();
        obj.insert("threads".into(), json!(case.threads));
        for (ti, t) in case.targets.iter().enumerate() {
            let ratios: Vec<f64> = samples[ci][ti]
                .iter()
                .zip(tm.iter())
                .map(|(a, b)| {
                    if b.ops_per_sec > 0.0 {
                        a.ops_per_sec / b.ops_per_sec
                    } else {
                        0.0
                    }
                })
                .collect();
            let f = &figs[ti];
            let mut v = json!({
                "ops_per_sec": round(f.ops_per_sec, 0),
                "p50_us": round(f.p50_us, 3),
                "p99_us": round(f.p99_us, 3),
                "errors": f.errors,
                "runs_ops_per_sec": samples[ci][ti].iter().map(|s| round(s.ops_per_sec, 0)).collect::<Vec<_>>(),
            });
            if *t != Target::Tmpfs {
                v["ratio_vs_tmpfs"] = json!(round(median(&ratios), 3));
                v["runs_ratio_vs_tmpfs"] =
                    json!(ratios.iter().map(|x| round(*x, 3)).collect::<Vec<_>>());
            }
            obj.insert(t.key().into(), v);
        }
        json_cases.insert(case.key.into(), Value::Object(obj));
    }
    let ratio_of = |key: &str, t: Target| -> f64 {
        json_cases[key][t.key()]["ratio_vs_tmpfs"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let fig_of = |key: &str, t: Target| -> Figure {
        let ci = CASES.iter().position(|c| c.key == key).unwrap_or(0);
        let ti = CASES[ci].targets.iter().position(|x| *x == t).unwrap_or(0);
        figure(&samples[ci][ti])
    };
    let text_of = |key: &str, t: Target| -> String {
        let f = fig_of(key, t);
        if key.starts_with("readdir") {
            describe_readdir(&f)
        } else {
            describe(&f)
        }
    };
    // (case, figure name, goal as a minimum ratio to tmpfs)
    let akvfs_rows: [(&str, &str, Option<f64>); 5] = [
        (
            "open_read_close_1t",
            "warm open+read+close, 1 thread",
            Some(0.70),
        ),
        (
            "open_read_close_2t",
            "warm open+read+close, 2 threads",
            Some(0.75),
        ),
        ("stat_1t", "cached stat, 1 thread", Some(0.90)),
        ("readdir_1000_1t", "readdir of 1,000 secrets", None),
        (
            "open_isatty_read_close_1t",
            "warm open+isatty+read+close, 1 thread",
            None,
        ),
    ];
    for (key, name, goal) in akvfs_rows {
        let r = ratio_of(key, Target::Akvfs);
        let mut row = Row::new(name, text_of(key, Target::Akvfs))
            .baseline(format!("tmpfs {}", text_of(key, Target::Tmpfs)))
            .ratio(r);
        if let Some(g) = goal {
            row = row.goal(
                format!(">= {g:.2}x"),
                r >= g && fig_of(key, Target::Akvfs).errors == 0,
            );
        }
        rows.push(row);
    }
    for (key, name) in [
        (
            "open_read_close_1t",
            "--strict-open open+read+close, 1 thread",
        ),
        (
            "open_read_close_2t",
            "--strict-open open+read+close, 2 threads",
        ),
    ] {
        rows.push(
            Row::new(name, text_of(key, Target::Strict))
                .baseline(format!("tmpfs {}", text_of(key, Target::Tmpfs)))
                .ratio(ratio_of(key, Target::Strict)),
        );
    }
    for (key, name) in [
        (
            "open_read_close_1t",
            "FUSE floor: open+read+close, 1 thread",
        ),
        (
            "open_read_close_2t",
            "FUSE floor: open+read+close, 2 threads",
        ),
        ("stat_1t", "FUSE floor: cached stat, 1 thread"),
        ("readdir_1000_1t", "FUSE floor: readdir of 1,000"),
        (
            "open_isatty_read_close_1t",
            "FUSE floor: open+isatty+read+close, 1 thread",
        ),
    ] {
        rows.push(
            Row::new(name, text_of(key, Target::Floor))
                .baseline("tmpfs, same rounds")
                .ratio(ratio_of(key, Target::Floor)),
        );
    }
    let gets = counts.get("get_secret");
    rows.push(
        Row::new(
            "vault GETs during the warm runs",
            format!(
                "{gets} GETs, {} list calls in {measured_secs:.0} s",
                counts.get("list_secrets")
            ),
        )
        .goal("0 GETs", gets == 0),
    );

    let json = json!({
        "files": FILES,
        "file_size": SIZE,
        "rounds": plan.rounds,
        "run_ms": plan.run.as_millis() as u64,
        "akvfs_flags": [],
        "strict_flags": ["--strict-open"],
        "fuse_floor": "minimal fuser filesystem in the bench process: TTL 60 s, open ENOSYS, akvfs's mount options",
        "cases": Value::Object(json_cases),
        "vault_calls_during_runs": counts.nonzero(),
        "measured_secs": round(measured_secs, 1),
    });
    drop(floor);
    drop(strict);
    drop(akvfs);
    drop(tmpfs);
    Ok(Section {
        key: "warm",
        json,
        rows,
    })
}
