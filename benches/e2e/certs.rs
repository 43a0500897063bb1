//! Figures 10 and 11: certificates. A cold `.certs/<name>/tls.pem` (the first open+read of a
//! certificate nothing has touched: one GET of its secret, the PKCS#12 decoded and converted)
//! against a direct SDK GET of the same secret, alternating which goes first; and a warm
//! `tls.pem` open+read+close against a tmpfs holding the same bytes, in interleaved rounds like
//! `warm` (a ratio is the median of the per-round ratios).

use akvfs_emulator::{SeedCertVersion, SeedPolicy};
use serde_json::json;
use std::time::Instant;

use crate::load::{self, FileSet, Op};
use crate::report::{Row, Section};
use crate::rig::{Akvfs, Result, Tmpfs, Vault};
use crate::sdk::DirectClient;
use crate::stats::{median, round, Spread};
use crate::upstream::against_sdk;
use crate::Ctx;

/// Upper bound on operations in one warm run.
const MAX_OPS: u64 = 4_000_000;

fn add_certificates(vault: &Vault, count: usize) -> Result<Vec<String>> {
    (0..count)
        .map(|i| {
            let name = format!("cert-{i:04}");
            let version = SeedCertVersion {
                policy: Some(SeedPolicy {
                    subject: format!("CN={name}.example.com"),
                    kty: Some("EC".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            vault
                .emu
                .add_certificate_version(&name, &version)
                .map_err(|e| format!("the emulator refused certificate {name}: {e}"))?;
            Ok(name)
        })
        .collect()
}

/// Both figures, on one vault and one mount.
pub fn run(ctx: &Ctx) -> Result<Section> {
    let n = ctx.plan.cold_samples;
    let warmups = 2;
    let vault = Vault::start(&[])?;
    let names = add_certificates(&vault, n + warmups)?;
    vault.settle();
    let m = Akvfs::mount(&ctx.bin, &vault, &ctx.work.dir("certs-akvfs")?, &[])?;
    let sdk = DirectClient::new(vault.emu.info(), vault.emu.ca_pem())?;
    let pem = |name: &str| m.file(&format!(".certs/{name}/tls.pem"));
    // Tokens and connections first, untimed.
    for name in &names[n..] {
        load::read_file(&pem(name)).ok_or_else(|| format!("cannot read {name}'s tls.pem"))?;
        sdk.get(name)?;
    }
    vault.emu.reset_counts();
    let (mut fs_us, mut sdk_us) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, name) in names[..n].iter().enumerate() {
        for step in 0..2 {
            let t = Instant::now();
            if (step == 0) == (i % 2 == 0) {
                let got = load::read_file(&pem(name));
                fs_us.push(t.elapsed().as_secs_f64() * 1e6);
                if !got.is_some_and(|b| b.starts_with(b"-----BEGIN PRIVATE KEY-----")) {
                    return Err(format!("{name}'s tls.pem is not key then chain"));
                }
            } else {
                sdk.get(name)?;
                sdk_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let gets = vault
        .emu
        .counts()
        .get("get_secret")
        .saturating_sub(n as u64);

    // Warm: one certificate's tls.pem, on akvfs and on a tmpfs with the same bytes.
    let warm_name = &names[0];
    let bytes = load::read_file(&pem(warm_name)).ok_or("cannot read the warm tls.pem")?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| "tls.pem is not text")?;
    let tmp = Tmpfs::mount(
        &ctx.work.dir("certs-tmpfs")?,
        &[("tls.pem".to_string(), text)],
    )?;
    let on_akvfs = FileSet::new(
        &m.path,
        &[format!(".certs/{warm_name}/tls.pem")],
        bytes.len(),
    )?;
    let on_tmpfs = FileSet::new(&tmp.path, &["tls.pem".to_string()], bytes.len())?;
    let (mut fs_ops, mut tmp_ops, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ctx.plan.rounds {
        let mut pair = [(0.0, true), (0.0, false)];
        if round % 2 == 1 {
            pair.reverse();
        }
        let (mut a, mut t) = (0.0, 0.0);
        for (_, is_akvfs) in pair.iter_mut() {
            let set = if *is_akvfs { &on_akvfs } else { &on_tmpfs };
            let r = load::run(set, Op::OpenReadClose, 1, ctx.plan.run, MAX_OPS);
            if r.errors > 0 {
                return Err(format!("{} warm tls.pem reads failed", r.errors));
            }
            if *is_akvfs {
                a = r.ops_per_sec();
            } else {
                t = r.ops_per_sec();
            }
        }
        fs_ops.push(a);
        tmp_ops.push(t);
        ratios.push(if t > 0.0 { a / t } else { 0.0 });
    }
    let (f, s) = (Spread::of(&fs_us), Spread::of(&sdk_us));
    let ratio = median(&ratios);
    let rows = vec![
        against_sdk(
            "cold .certs/<name>/tls.pem (first open+read)",
            &f,
            " of its secret",
            &s,
        ),
        Row::new(
            "vault GETs per cold tls.pem",
            format!("{:.2}", gets as f64 / n as f64),
        )
        .goal("1", gets == n as u64),
        Row::new(
            "warm tls.pem open+read+close, 1 thread",
            format!("{:.0} ops/s", median(&fs_ops)),
        )
        .baseline(format!("tmpfs {:.0} ops/s", median(&tmp_ops)))
        .ratio(ratio)
        .goal(">= 0.5x tmpfs", ratio >= 0.5),
    ];
    let json = json!({
        "cold_samples": n,
        "cold_tls_pem_us": f.json(),
        "sdk_get_us": s.json(),
        "cold_p50_ratio": round(if s.p50 > 0.0 { f.p50 / s.p50 } else { 0.0 }, 3),
        "gets_per_cold_read": round(gets as f64 / n as f64, 3),
        "tls_pem_bytes": bytes.len(),
        "warm_rounds": ctx.plan.rounds,
        "warm_akvfs_ops_per_s": fs_ops,
        "warm_tmpfs_ops_per_s": tmp_ops,
        "warm_ratio_median": round(ratio, 3),
    });
    Ok(Section {
        key: "certificates",
        json,
        rows,
    })
}
