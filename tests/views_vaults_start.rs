//! Starting a mount whose views read another vault: an unknown vault, a
//! server that is no vault, a view's failure in the other vault and a
//! vault named in a SecretProviderClass object each fail the start with one
//! line naming the view and the vault or field.

mod common;
#[path = "vaults/support.rs"]
mod vaults;

use common::*;
use vaults::*;

#[test]
fn unknown_vaults_and_vault_names_in_objects_fail_the_start_clearly() {
    let emu = two_vaults();
    emu.set_secret("db", "a");
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let start = |flag: &str, text: &str| {
        let file = tmp.path().join("views");
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        run(mount_command(&emu, &wi_env(&emu), &mnt, &[flag, &file]))
    };
    // Nothing listens there: the start fails naming the view and the vault,
    // optional or not (optional forgives a missing object, not a vault).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    for optional in ["false", "true"] {
        let out = start(
            "--views",
            &format!(
                "[[view]]\npath = \"x/db\"\nname = \"db\"\noptional = {optional}\nvault = \"{dead}\"\n"
            ),
        );
        assert!(!out.status.success());
        let line = out.error_line();
        assert!(line.contains("view x/db") && line.contains(&dead), "{line}");
        assert!(line.contains("check the view's vault setting"), "{line}");
    }
    // A server that answers 404 to everything is no vault.
    let b = vault_b(&emu);
    b.inject_fault(Fault::status(404)).unwrap();
    let out = start(
        "--views",
        &format!(
            "[[view]]\npath = \"x/db\"\nname = \"db\"\noptional = true\nvault = \"{}\"\n",
            b.info().vault_url
        ),
    );
    b.clear_faults();
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("view x/db") && line.contains("no vault answers at this URL"),
        "{line}"
    );
    // A view's own failure in the other vault names that vault.
    b.set_secret("conf", r#"{"user":"svc"}"#).unwrap();
    let out = start(
        "--views",
        &format!(
            "[[view]]\npath = \"pw\"\nname = \"conf\"\njson_pointer = \"/password\"\nvault = \"{}\"\n",
            b.info().vault_url
        ),
    );
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("pw") && line.contains(&b.info().vault_url) && line.contains("/password"),
        "{line}"
    );
    assert!(!out.stderr.contains("svc"), "{}", out.stderr);
    // A vault name that is no vault name is refused like the mount's.
    let out = start(
        "--views",
        "[[view]]\npath = \"x\"\nname = \"db\"\nvault = \"no_such_vault\"\n",
    );
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("view \"x\": vault") && line.contains("no_such_vault"),
        "{line}"
    );
    // A SecretProviderClass names its vault for the class; an object
    // naming one is refused, naming the field.
    let out = start(
        "--spc",
        &format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: \"{}\"\n    objects: |\n      array:\n        - |\n          objectName: db\n          objectType: secret\n          keyvaultName: other\n",
            emu.info().vault_url
        ),
    );
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("objects entry #1") && line.contains("cannot name a vault"),
        "{line}"
    );
}
