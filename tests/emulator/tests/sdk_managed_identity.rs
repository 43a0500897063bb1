//! The Rust SDK's ManagedIdentityCredential (App Service source) against the emulator. The SDK
//! reads IDENTITY_ENDPOINT and IDENTITY_HEADER from the process environment only, so this file
//! holds a single test that sets them once (its own test process; nothing runs in parallel).

mod common;

use akvfs_emulator::{Identity, Permissions};
use azure_core::http::RetryOptions;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use common::*;

async fn get_value(
    emu: &akvfs_emulator::Emulator,
    id: Option<UserAssignedId>,
) -> azure_core::Result<String> {
    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: id,
        client_options: client_options(emu, RetryOptions::none()),
    }))?;
    let client = secret_client(emu, credential, RetryOptions::none());
    let secret = client.get_secret("a", None).await?.into_model()?;
    Ok(secret.value.unwrap_or_default())
}

#[tokio::test]
async fn managed_identity_system_and_user_assigned() {
    let emu = emulator().await;
    emu.set_secret("a", "1").expect("set");
    let mut user_assigned = Identity::new("0f0e0d0c-1111-4222-8333-444455556666");
    user_assigned.managed_identity = true;
    user_assigned.permissions = Permissions::read_only();
    emu.add_identity(user_assigned).expect("identity added");
    let mut not_managed = Identity::new("9a9a9a9a-1111-4222-8333-444455556666");
    not_managed.managed_identity = false;
    emu.add_identity(not_managed).expect("identity added");

    // SAFETY of the environment change: this test binary runs this one test only.
    std::env::set_var("IDENTITY_ENDPOINT", &emu.info().identity_endpoint);
    std::env::set_var("IDENTITY_HEADER", &emu.info().identity_header);

    assert_eq!(get_value(&emu, None).await.expect("system-assigned"), "1");
    assert_eq!(emu.counts().get("token_managed_identity"), 1);
    assert_eq!(
        get_value(
            &emu,
            Some(UserAssignedId::ClientId(
                "0f0e0d0c-1111-4222-8333-444455556666".into()
            ))
        )
        .await
        .expect("user-assigned"),
        "1"
    );

    // An identity that is not a managed identity, and an unknown one: App Service answers 400.
    for client_id in [
        "9a9a9a9a-1111-4222-8333-444455556666",
        "00000000-dead-4bee-8f00-000000000000",
    ] {
        let err = get_value(&emu, Some(UserAssignedId::ClientId(client_id.into())))
            .await
            .expect_err("no such managed identity");
        assert_eq!(inner_http_error(&err).map(|e| e.0), Some(400), "{err}");
        assert!(
            err.to_string()
                .contains("The requested identity has not been assigned to this resource"),
            "{err}"
        );
    }

    // A wrong identity header is refused with 401.
    std::env::set_var("IDENTITY_HEADER", "wrong");
    let err = get_value(&emu, None).await.expect_err("wrong header");
    assert_eq!(inner_http_error(&err).map(|e| e.0), Some(401), "{err}");
    assert_eq!(emu.counts().get("token_managed_identity"), 5);
}
