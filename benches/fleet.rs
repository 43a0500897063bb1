//! Fleet simulation: many nodes on one vault, following change notices.
//!
//! ```text
//! cargo bench --bench fleet -- [--agents 1000] [--limit 400] [--k 10] [--only NAMES] [--json PATH]
//! ```
//!
//! It starts the Key Vault emulator in this process with its request budget scaled down (400
//! calls per 10 s: a tenth of Key Vault's 4,000, for a tenth of a 10,000-node fleet), the
//! Kubernetes API fake (tests/kubefake), two `akvfs watch` processes that elect a leader on a
//! Lease in the fake, list the vault and publish the notice ConfigMap there, a few real
//! `akvfs mount` processes (FUSE) following that ConfigMap, and 1,000 node agents running the
//! real node-side code (start-up, cache, filesystem core, refresher, notice follower) without
//! FUSE, in this process; the agents get the notice through one relay that follows the
//! ConfigMap with the nodes' own source (`fleet/procs.rs`) and fans it out (`fleet/bus.rs`).
//! Scenarios run in order and print one line each with what they measured and the target;
//! docs/SCALING.md and docs/BENCHMARKS.md explain them. A bounded run, not a test: nothing here
//! asserts.

#[path = "fleet/agents.rs"]
mod agents;
#[path = "fleet/bus.rs"]
mod bus;
#[path = "../tests/kubefake/mod.rs"]
mod kubefake;
#[path = "fleet/meter.rs"]
mod meter;
#[path = "fleet/procs.rs"]
mod procs;
#[path = "fleet/scenarios.rs"]
mod scenarios;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akvfs::sim::{lock, Vault};
use akvfs::sim::{MountConfig, MountOptions};
use akvfs_emulator::{Emulator, EmulatorConfig};
use clap::Parser;

use agents::Agent;
use bus::Bus;
use meter::Meter;
use procs::Procs;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Node agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// The vault's request limit per 10 s, shared by the fleet.
    #[arg(long, default_value_t = 400)]
    limit: u32,
    /// Secrets in the vault.
    #[arg(long, default_value_t = 100)]
    secrets: usize,
    /// Secrets every node reads (and caches).
    #[arg(long, default_value_t = 10)]
    hot: usize,
    /// Secrets rotated at once in the k-rotations scenario.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Nodes restarted at once.
    #[arg(long, default_value_t = 100)]
    restart: usize,
    /// Real `akvfs mount` processes beside the agents.
    #[arg(long, default_value_t = 4)]
    real_mounts: usize,
    /// The watcher's listing interval, seconds.
    #[arg(long, default_value_t = 5)]
    watch_interval: u64,
    /// Steady-state measurement, seconds.
    #[arg(long, default_value_t = 60)]
    steady_secs: u64,
    /// Comma-separated scenarios to run (default: all).
    #[arg(long)]
    only: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

/// Everything a scenario can touch.
pub struct Fleet {
    args: Args,
    emu: Arc<Emulator>,
    cfg: MountConfig,
    vault: Arc<dyn Vault>,
    bus: Arc<Bus>,
    procs: Procs,
    agents: tokio::sync::Mutex<Vec<Agent>>,
    meter: Meter,
    next_agent: AtomicU64,
    hot: Vec<String>,
    /// Hot secrets deleted or disabled by a scenario (restarted nodes no longer read them).
    removed: std::sync::Mutex<Vec<String>>,
}

impl Fleet {
    /// List pages the vault answered so far: the watcher's (nodes list nothing while notices
    /// are live; a start without a usable notice is counted apart, see `Agent::listed`).
    fn watcher_pages(&self) -> u64 {
        self.emu.counts().get("list_secrets")
    }

    fn live_hot(&self) -> Vec<String> {
        let removed = lock(&self.removed);
        self.hot
            .iter()
            .filter(|h| !removed.contains(h))
            .cloned()
            .collect()
    }

    fn agent_name(&self) -> String {
        format!(
            "node-{:05}",
            self.next_agent.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Starts `n` agents, `parallel` at a time.
    async fn start_agents(&self, n: usize, parallel: usize) -> Result<Vec<Agent>, String> {
        let mut out = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let batch = left.min(parallel);
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..batch {
                let (name, vault, cfg, source, hot) = (
                    self.agent_name(),
                    Arc::clone(&self.vault),
                    self.cfg.clone(),
                    self.bus.source(),
                    self.live_hot(),
                );
                set.spawn(async move { Agent::start(name, vault, &cfg, source, &hot).await });
            }
            while let Some(r) = set.join_next().await {
                out.push(r.map_err(|e| e.to_string())??);
            }
            left -= batch;
        }
        Ok(out)
    }
}

fn mount_config(emu: &Emulator) -> Result<MountConfig, String> {
    let info = emu.info();
    // The agents' identity: workload identity, as on an AKS node.
    std::env::set_var("AZURE_AUTHORITY_HOST", &info.authority_host);
    std::env::set_var("AZURE_TENANT_ID", &info.tenant_id);
    std::env::set_var("AZURE_CLIENT_ID", &info.client_id);
    std::env::set_var("AZURE_FEDERATED_TOKEN_FILE", &info.federated_token_file);
    MountOptions {
        vault: Some(info.vault_url.clone()),
        path: Some("/nonexistent/fleet".into()),
        auth: Some("workload-identity".into()),
        ca_file: Some(info.ca_file.clone()),
        disable_challenge_resource_verification: Some(true),
        refresh_interval: Some("30s".into()),
        // Readability checks at the default 10 min would cost each node 10 GETs per 7.5 min
        // on average; docs/SCALING.md gives their share separately.
        max_unverified: Some("24h".into()),
        idle_timeout: Some("24h".into()),
        notice: Some("configmap:akvfs/akvfs-notice-sim".into()),
        notice_poll_interval: Some("6h".into()),
        node_name: Some("unused".into()),
        ..Default::default()
    }
    .validate(true, false)
    .map_err(|e| e.as_flag())
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("fleet: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    // A generous budget while the fleet starts; the scaled limit from then on.
    let emu = Emulator::spawn(EmulatorConfig {
        requests_per_10s: 1_000_000,
        ..EmulatorConfig::default()
    })
    .map_err(|e| format!("the emulator did not start: {e}"))?;
    let emu = Arc::new(emu);
    let hot: Vec<String> = (0..args.hot).map(|i| format!("hot-{i}")).collect();
    for h in &hot {
        emu.set_secret(h, &format!("{h}-v0"))
            .map_err(|e| e.to_string())?;
    }
    for i in 0..args.secrets.saturating_sub(args.hot) {
        emu.set_secret(&format!("cold-{i:03}"), "x")
            .map_err(|e| e.to_string())?;
    }
    let cfg = mount_config(&emu)?;
    let vault = agents::connect(&cfg)?;
    let dir = std::env::temp_dir().join(format!("akvfs-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let info = emu.info().clone();
    let mut procs = Procs::start(
        &dir,
        &info.vault_url,
        &info.ca_file.display().to_string(),
        (args.agents + args.real_mounts) as u32,
        args.limit,
        Duration::from_secs(args.watch_interval),
    );
    procs.start_watcher()?;
    procs.start_watcher()?;
    let bus = Bus::new();
    procs::spawn_relay(procs.notice_name(), Arc::clone(&bus));
    let t = Instant::now();
    while bus.current().is_none() {
        if t.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "no notice from akvfs watch within 2 min (logs in {})",
                dir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    procs.start_mounts(args.real_mounts)?;
    let fleet = Arc::new(Fleet {
        meter: Meter::start(Arc::clone(&emu)),
        args: args.clone(),
        emu,
        cfg,
        vault,
        bus,
        procs,
        agents: Default::default(),
        next_agent: AtomicU64::new(0),
        hot,
        removed: Default::default(),
    });
    let t = Instant::now();
    // The real mounts read what their pods would, as the agents do.
    let readers: Vec<_> = fleet
        .procs
        .mounts
        .iter()
        .map(|m| {
            let (dir, hot) = (m.dir.clone(), fleet.hot.clone());
            std::thread::spawn(move || {
                hot.iter()
                    .all(|h| std::fs::read_to_string(dir.join(h)).is_ok())
            })
        })
        .collect();
    let started_agents = fleet.start_agents(args.agents, args.agents).await?;
    *fleet.agents.lock().await = started_agents;
    let mounts_ok = readers
        .into_iter()
        .map(|r| r.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    println!(
        "fleet: {} agents and {mounts_ok}/{} real mounts up in {:.1}s ({} hot secrets each, {} in the vault); logs of the processes in {}",
        args.agents,
        args.real_mounts,
        t.elapsed().as_secs_f64(),
        args.hot,
        args.secrets,
        dir.display()
    );
    fleet.emu.set_requests_per_10s(args.limit);
    // Let the start-up calls leave the 10 s window.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rows = scenarios::run_all(&fleet).await;
    let total = started.elapsed().as_secs_f64();
    println!("fleet: done in {total:.0}s");
    if let Some(p) = &fleet.args.json {
        let v = serde_json::json!({ "args": format!("{:?}", fleet.args), "seconds": total, "scenarios": rows });
        std::fs::write(p, serde_json::to_string_pretty(&v).unwrap_or_default())
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    for a in fleet.agents.lock().await.iter() {
        a.stop();
    }
    Ok(())
}
