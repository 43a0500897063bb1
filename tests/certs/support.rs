//! Helpers of the certificate tests: chains made by the OpenSSL command
//! line and imported into the emulator.

use std::path::Path;

use akvfs_emulator::SeedCertVersion;
use base64::Engine;

use crate::common::Emulator;

#[path = "openssl_chain.rs"]
mod openssl_chain;
use openssl_chain::chain;
pub use openssl_chain::{openssl, read};

/// A root -> intermediate -> leaf chain for `localhost` (RSA 2048, or P-384 for "ec"), and
/// a PFX (empty password) holding the leaf's key, the leaf and the CAs in the wrong order.
/// Returns the base64 PFX.
pub fn make_chain(dir: &Path, alg: &str) -> String {
    chain(dir, if alg == "rsa" { "rsa" } else { "p384" });
    let o = |args: &[&str]| {
        openssl(dir, args);
    };
    std::fs::write(
        dir.join("cas.crt"),
        [read(dir, "root.crt"), read(dir, "inter.crt")].concat(),
    )
    .unwrap();
    o(&[
        "pkcs12",
        "-export",
        "-passout",
        "pass:",
        "-inkey",
        "leaf.key",
        "-in",
        "leaf.crt",
        "-certfile",
        "cas.crt",
        "-out",
        "cert.pfx",
    ]);
    base64::engine::general_purpose::STANDARD.encode(read(dir, "cert.pfx"))
}

pub fn import(emu: &Emulator, name: &str, pfx_b64: &str) -> String {
    emu.inner()
        .add_certificate_version(
            name,
            &SeedCertVersion {
                pfx: Some(pfx_b64.to_string()),
                ..Default::default()
            },
        )
        .expect("the emulator imports the PFX")
}
