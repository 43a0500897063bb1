//! Benchmark of the CSI mode (`akvfs csi`), on this machine, in one run.
//!
//! ```text
//! cargo bench --bench csi -- [--quick] [--json PATH] [--only NAMES] [--skip NAMES]
//! ```
//!
//! It starts the Key Vault emulator in this process with one workload identity per simulated
//! service account, runs the release `akvfs` binary as the node plugin (`akvfs csi` on a unix
//! socket), and plays kubelet: NodePublishVolume with pod info, a token minted for the pod's
//! service account and a target path laid out like kubelet's. Each figure has a baseline from
//! the same run: a tmpfs with the same files, the hostPath mode's `akvfs mount`. It needs root
//! and /dev/fuse; all traffic stays on 127.0.0.1. docs/BENCHMARKS.md ("CSI mode") has results.
//!
//! Scenarios: `warm` (open+read+close through a target path), `first-read` (publish to first
//! read), `memory` (RSS per identity mount), `calls` (vault calls per node against identities).

#[path = "e2e/child.rs"]
mod child;
#[path = "csi/kubelet.rs"]
mod kubelet;
#[allow(dead_code)]
#[path = "e2e/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "e2e/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "e2e/rig.rs"]
mod rig;
#[path = "csi/scale.rs"]
mod scale;
#[allow(dead_code)]
#[path = "e2e/stats.rs"]
mod stats;
#[path = "csi/warm.rs"]
mod warm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

const SCENARIOS: [&str; 4] = ["warm", "first-read", "memory", "calls"];

#[derive(Parser, Debug)]
#[command(
    name = "csi",
    about = "Benchmark of the CSI node plugin against tmpfs and the hostPath mode, same run"
)]
struct Opts {
    /// Fewer rounds and samples: the whole run in about two minutes.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    #[command(flatten)]
    selection: rig::Selection,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// How much to do.
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    pub run: Duration,
}

/// What every scenario gets.
pub struct Ctx {
    pub bin: PathBuf,
    pub work: rig::Workdir,
    pub plan: Plan,
}

fn main() {
    let opts = Opts::parse();
    rig::begin("csi", &opts.selection, &SCENARIOS);
    let code = match bench(&opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("csi: {e}");
            1
        }
    };
    rig::undo_all();
    std::process::exit(code);
}

fn bench(opts: &Opts) -> rig::Result<()> {
    let bin = std::env::var_os("AKVFS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_akvfs")));
    if !bin.is_file() {
        return Err(format!(
            "no akvfs binary at {}; set AKVFS_BIN",
            bin.display()
        ));
    }
    let ctx = Ctx {
        bin,
        work: rig::Workdir::new()?,
        plan: Plan {
            quick: opts.quick,
            rounds: if opts.quick { 3 } else { 7 },
            run: Duration::from_millis(if opts.quick { 300 } else { 1000 }),
        },
    };
    let started = Instant::now();
    let mut sections = Vec::new();
    let mut failures = Vec::new();
    for name in SCENARIOS {
        if !opts.selection.runs(name) {
            continue;
        }
        eprintln!("csi: {name} ...");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match name {
            "warm" => warm::run(&ctx),
            "first-read" => scale::first_read(&ctx),
            "memory" => scale::memory(&ctx),
            _ => scale::calls(&ctx),
        }));
        match result {
            Ok(Ok(s)) => sections.push(s),
            Ok(Err(e)) => failures.push((name, e)),
            Err(_) => failures.push((name, "panicked".to_string())),
        }
    }
    let mut rows: Vec<report::Row> = sections.iter().flat_map(|s| s.rows.clone()).collect();
    for (name, e) in &failures {
        rows.push(report::Row::new(
            format!("{name}: FAILED TO RUN"),
            e.lines().next().unwrap_or("").to_string(),
        ));
    }
    println!();
    println!(
        "akvfs CSI benchmark: {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if opts.quick { " (--quick)" } else { "" }
    );
    println!();
    report::print_table(&rows);
    for (name, e) in &failures {
        eprintln!("\ncsi: scenario {name} failed:\n{e}");
    }
    if let Some(path) = &opts.json {
        let mut figures = serde_json::Map::new();
        for s in &sections {
            figures.insert(s.key.into(), s.json.clone());
        }
        let doc = json!({
            "quick": opts.quick,
            "total_s": stats::round(started.elapsed().as_secs_f64(), 1),
            "failures": failures.iter().map(|(n, e)| json!({ "scenario": n, "error": e })).collect::<Vec<_>>(),
            "figures": Value::Object(figures),
        });
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| format!("cannot encode the JSON report: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} scenario(s) failed to run", failures.len()))
    }
}
