//! Helpers of the tests of mounts reading several vaults: an emulator with
//! a second vault, and a config file whose one mount reads from both.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::common::*;

/// An emulator serving two vaults: its own (A) and one extra vault (B).
pub fn two_vaults() -> Emulator {
    emulator_cfg(&[], |c| {
        c.extra_vaults = vec!["127.0.0.1:0".parse().unwrap()];
    })
}

/// Vault B's controls.
pub fn vault_b(emu: &Emulator) -> &akvfs_emulator::Emulator {
    emu.inner().extra_vault(0).expect("the extra vault")
}

pub fn errno(m: &Mount, path: &str) -> Option<i32> {
    m.read(path).err().and_then(|e| e.raw_os_error())
}

pub fn text(m: &Mount, path: &str) -> String {
    String::from_utf8_lossy(&m.read(path).unwrap_or_default()).into_owned()
}

/// A config file with one mount of vault A whose views read from A and B.
pub fn config(emu: &Emulator, dir: &Path, mnt: &Path, settings: &str, views: &str) -> PathBuf {
    let file = dir.join("config.toml");
    let text = format!(
        "[[mount]]\nvault = \"{}\"\npath = \"{}\"\nca_file = \"{}\"\ndisable_challenge_resource_verification = true\n{settings}\n{views}",
        emu.info().vault_url,
        mnt.display(),
        emu.info().ca_file,
    );
    std::fs::write(&file, text).unwrap();
    file
}

pub fn run_config(emu: &Emulator, file: &Path, mnt: &Path) -> Mount {
    std::fs::create_dir_all(mnt).unwrap();
    let mut cmd = akvfs(&wi_env(emu));
    cmd.arg("run").arg("--config").arg(file);
    Mount::from_command(cmd, mnt, None)
}
