//! The environment a child akvfs starts from, in the tests and the benches alike: none of the
//! Azure identity or logging settings of the process that starts it.

use std::process::Command;

/// Removes from `cmd` every Azure identity variable (`AZURE_*`, `IDENTITY_*`) and logging
/// setting of this process's environment, so the child sees only what the caller sets.
pub fn without_ambient_settings(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE_")
            || k.starts_with("IDENTITY_")
            || k == "AKVFS_LOG"
            || k == "RUST_LOG"
        {
            cmd.env_remove(k);
        }
    }
    cmd
}
