//! End-to-end benchmark of akvfs against a tmpfs baseline and a direct SDK client, on this
//! machine, in one run.
//!
//! ```text
//! cargo bench --bench e2e -- [--quick] [--json PATH] [--soak-secs N] [--outage-secs N]
//!                            [--only NAMES] [--skip NAMES]
//! ```
//!
//! It starts the Key Vault emulator in this process, mounts the release `akvfs` binary (built by
//! cargo for this bench, or `$AKVFS_BIN`) as a child process on a scratch directory, mounts a
//! tmpfs holding the same files, and measures every figure against a baseline taken in the same
//! run. It needs root (mount, tmpfs) and /dev/fuse; all traffic stays on 127.0.0.1.
//! docs/BENCHMARKS.md explains each figure, the method and the latest results.
//!
//! # Layout
//! - `rig`: emulator, akvfs and tmpfs fixtures, and cleanup on return, panic and signals.
//! - `load`: the timed open+read+close, stat and readdir loops.
//! - `sdk`: the direct Azure SDK client used as the cold-read baseline.
//! - `floor`: a minimal FUSE filesystem, to tell FUSE's own cost from akvfs's.
//! - `warm`, `upstream`, `certs`, `rotation`, `memory`: the scenarios.
//! - `report`, `stats`: table rows, verdicts, medians and percentiles.

#[path = "e2e/certs.rs"]
mod certs;
#[path = "e2e/child.rs"]
mod child;
#[path = "e2e/floor.rs"]
mod floor;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/memory.rs"]
mod memory;
#[path = "e2e/report.rs"]
mod report;
#[path = "e2e/rig.rs"]
mod rig;
#[path = "e2e/rotation.rs"]
mod rotation;
#[path = "e2e/sdk.rs"]
mod sdk;
#[path = "e2e/stats.rs"]
mod stats;
#[path = "e2e/upstream.rs"]
mod upstream;
#[path = "e2e/warm.rs"]
mod warm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use report::{Row, Section, Verdict};

/// The scenarios, in the order they run: the noise-sensitive ones first, the long ones last.
const SCENARIOS: [&str; 9] = [
    "warm",
    "cold",
    "certs",
    "herd",
    "hot",
    "rotation",
    "rotation-default",
    "outage",
    "memory",
];

#[derive(Parser, Debug)]
#[command(
    name = "e2e",
    about = "End-to-end benchmark: akvfs against tmpfs and a direct SDK client, same run",
    after_help = "Scenarios: warm (open+read+close, stat, readdir, --strict-open), cold, herd \
                  (64 concurrent cold readers), hot (100 hot unchanged secrets), rotation \
                  (--refresh-interval 1s), rotation-default (30 s), outage, memory (RSS soak), \
                  certs (cold and warm .certs/<name>/tls.pem)."
)]
struct Opts {
    /// Fewer rounds and samples, a 30 s soak and a 20 s outage: the whole run in a few minutes.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Length of the RSS soak. [default: 600, or 30 with --quick]
    #[arg(long, value_name = "N")]
    soak_secs: Option<u64>,
    /// Length of the vault outage. [default: 300, or 20 with --quick]
    #[arg(long, value_name = "N")]
    outage_secs: Option<u64>,
    /// Refresh interval during the outage, seconds. [default: 30, or 5 with --quick]
    #[arg(long, value_name = "N")]
    outage_interval_secs: Option<u64>,
    /// Interleaved rounds of the warm workloads (at least 3). [default: 7, or 3 with --quick]
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Length of one warm run, milliseconds. [default: 1000, or 300 with --quick]
    #[arg(long, value_name = "MS")]
    run_ms: Option<u64>,
    #[command(flatten)]
    selection: rig::Selection,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// How much of everything to do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    pub run: Duration,
    pub cold_samples: usize,
    pub herd_rounds: usize,
    pub hot_window: Duration,
    pub rotation_fast_samples: usize,
    pub rotation_default_samples: usize,
    pub soak: Duration,
    pub outage: Duration,
    pub outage_interval: Duration,
}

impl Plan {
    fn from(o: &Opts) -> Plan {
        let q = o.quick;
        Plan {
            quick: q,
            rounds: o.rounds.unwrap_or(if q { 3 } else { 7 }).max(3),
            run: Duration::from_millis(
                o.run_ms
                    .unwrap_or(if q { 300 } else { 1000 })
                    .clamp(50, 60_000),
            ),
            cold_samples: if q { 20 } else { 100 },
            herd_rounds: 3,
            hot_window: Duration::from_secs(if q { 6 } else { 12 }),
            rotation_fast_samples: if q { 5 } else { 20 },
            rotation_default_samples: if q { 1 } else { 3 },
            soak: Duration::from_secs(
                o.soak_secs
                    .unwrap_or(if q { 30 } else { 600 })
                    .clamp(5, 24 * 3600),
            ),
            outage: Duration::from_secs(
                o.outage_secs
                    .unwrap_or(if q { 20 } else { 300 })
                    .clamp(5, 24 * 3600),
            ),
            outage_interval: Duration::from_secs(
                o.outage_interval_secs
                    .unwrap_or(if q { 5 } else { 30 })
                    .clamp(1, 3600),
            ),
        }
    }

    fn json(&self) -> Value {
        json!({
            "quick": self.quick,
            "rounds": self.rounds,
            "run_ms": self.run.as_millis() as u64,
            "cold_samples": self.cold_samples,
            "herd_rounds": self.herd_rounds,
            "hot_window_s": self.hot_window.as_secs(),
            "rotation_1s_samples": self.rotation_fast_samples,
            "rotation_default_samples": self.rotation_default_samples,
            "soak_s": self.soak.as_secs(),
            "outage_s": self.outage.as_secs(),
            "outage_refresh_interval_s": self.outage_interval.as_secs(),
        })
    }
}

/// What every scenario gets.
pub struct Ctx {
    pub bin: PathBuf,
    pub work: rig::Workdir,
    pub plan: Plan,
}

fn akvfs_bin() -> rig::Result<PathBuf> {
    let bin = std::env::var_os("AKVFS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_akvfs")));
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no akvfs binary at {}; run `cargo build --release -p akvfs` or set AKVFS_BIN",
            bin.display()
        ))
    }
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpu": cpu,
        "mem_gib": stats::round(mem_kib as f64 / 1048576.0, 1),
    })
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_one(name: &str, ctx: &Ctx) -> rig::Result<Vec<Section>> {
    Ok(match name {
        "warm" => vec![warm::run(ctx)?],
        "cold" => vec![upstream::cold(ctx)?],
        "certs" => vec![certs::run(ctx)?],
        "herd" => vec![upstream::herd(ctx)?],
        "hot" => vec![upstream::hot(ctx)?],
        "rotation" => vec![rotation::fast(ctx)?],
        "rotation-default" => vec![rotation::default_interval(ctx)?],
        "outage" => vec![rotation::outage(ctx)?],
        "memory" => vec![memory::soak(ctx)?],
        other => return Err(format!("unknown scenario {other}")),
    })
}

fn main() {
    let opts = Opts::parse();
    rig::begin("e2e", &opts.selection, &SCENARIOS);
    let code = match bench(&opts) {
        // Missed goals are results, reported in the table and the JSON, not failures.
        Ok(_all_met) => 0,
        Err(e) => {
            eprintln!("e2e: {e}");
            1
        }
    };
    rig::undo_all();
    std::process::exit(code);
}

/// Runs the selected scenarios, prints the table, writes the JSON; true when every goal is met.
fn bench(opts: &Opts) -> rig::Result<bool> {
    let plan = Plan::from(opts);
    let ctx = Ctx {
        bin: akvfs_bin()?,
        work: rig::Workdir::new()?,
        plan,
    };
    let started = Instant::now();
    let mut sections: Vec<Section> = Vec::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut timings = serde_json::Map::new();
    for name in SCENARIOS {
        if !opts.selection.runs(name) {
            continue;
        }
        eprintln!("e2e: {name} ...");
        let t = Instant::now();
        let load_before = loadavg();
        // A failing or panicking scenario is reported and the others still run; its fixtures
        // are cleaned up by their drop guards while unwinding.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(name, &ctx)));
        timings.insert(
            name.into(),
            json!({
                "secs": stats::round(t.elapsed().as_secs_f64(), 1),
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }),
        );
        match result {
            Ok(Ok(mut s)) => sections.append(&mut s),
            Ok(Err(e)) => failures.push((name.to_string(), e)),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                failures.push((name.to_string(), format!("panicked: {msg}")));
            }
        }
    }
    let total = started.elapsed().as_secs_f64();

    let mut rows: Vec<Row> = sections.iter().flat_map(|s| s.rows.clone()).collect();
    for (name, e) in &failures {
        rows.push(Row::new(
            format!("{name}: FAILED TO RUN"),
            e.lines().next().unwrap_or("").to_string(),
        ));
    }
    let m = machine();
    println!();
    println!(
        "akvfs end-to-end benchmark: {} vCPU, Linux {}, {}; {:.0} s{}",
        m["nproc"],
        m["kernel"].as_str().unwrap_or(""),
        m["cpu"].as_str().unwrap_or(""),
        total,
        if ctx.plan.quick { " (--quick)" } else { "" }
    );
    println!();
    report::print_table(&rows);
    for (name, e) in &failures {
        eprintln!("\ne2e: scenario {name} failed:\n{e}");
    }

    let goals: Vec<Value> = rows
        .iter()
        .filter(|r| r.verdict != Verdict::Info)
        .map(|r| json!({ "figure": r.figure, "result": r.akvfs, "goal": r.goal, "pass": r.verdict == Verdict::Pass }))
        .collect();
    let all_met = failures.is_empty() && rows.iter().all(|r| r.verdict != Verdict::Miss);
    if let Some(path) = &opts.json {
        let mut figures = serde_json::Map::new();
        for s in &sections {
            figures.insert(s.key.into(), s.json.clone());
        }
        let doc = json!({
            "machine": m,
            "plan": ctx.plan.json(),
            "akvfs_bin": ctx.bin.display().to_string(),
            "total_s": stats::round(total, 1),
            "scenarios": Value::Object(timings),
            "goals": goals,
            "all_goals_met": all_met,
            "failures": failures.iter().map(|(n, e)| json!({ "scenario": n, "error": e })).collect::<Vec<_>>(),
            "figures": Value::Object(figures),
        });
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| format!("cannot encode the JSON report: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("e2e: wrote {}", path.display());
    }
    if !failures.is_empty() {
        return Err(format!("{} scenario(s) failed to run", failures.len()));
    }
    Ok(all_met)
}
