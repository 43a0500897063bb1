//! The IMDS and Azure Arc token endpoints, request by request, on loopback addresses (the SDKs
//! against them at their real addresses run in network namespaces: the akvfs crate's
//! `tests/imds.rs` and `tests/conformance/test_managed_identity.py`).

use akvfs_emulator::{Emulator, EmulatorConfig, Fault, Identity, Operation};
use serde_json::Value;

const PATH: &str = "/metadata/identity/oauth2/token";
const VAULT: &str = "https://vault.azure.net";

async fn emulator(keys: Option<&std::path::Path>) -> Emulator {
    let emu = Emulator::start(EmulatorConfig {
        imds_listen: Some("127.0.0.1:0".parse().expect("address")),
        arc_listen: Some("127.0.0.1:0".parse().expect("address")),
        arc_key_dir: keys.map(|k| k.to_path_buf()),
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let mut uai = Identity::new("uai-client");
    uai.object_id = Some("uai-object".into());
    uai.managed_identity = true;
    emu.add_identity(uai).expect("identity");
    emu.add_identity(Identity::new("not-managed"))
        .expect("identity");
    emu
}

fn imds(emu: &Emulator) -> String {
    format!(
        "{}{PATH}",
        emu.info().imds_endpoint.clone().expect("IMDS served")
    )
}

async fn get(
    url: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut u = reqwest::Url::parse(url).expect("URL");
    u.query_pairs_mut().extend_pairs(query);
    let mut req = reqwest::Client::new().get(u);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        challenge,
    )
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims")
}

const META: &[(&str, &str)] = &[("Metadata", "true")];

#[tokio::test]
async fn tokens_for_system_and_user_assigned_identities() {
    let emu = emulator(None).await;
    let url = imds(&emu);
    let base = [("api-version", "2018-02-01"), ("resource", VAULT)];
    let (status, body, _) = get(&url, &base, META).await;
    assert_eq!(status, 200, "{body}");
    for field in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
        let v = body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is a string: {body}"));
        assert!(v.parse::<i64>().is_ok(), "{field}: {v}");
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], VAULT);
    assert_eq!(body["client_id"], emu.info().client_id.as_str());
    let c = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["appid"], emu.info().client_id.as_str());
    assert_eq!(c["aud"], VAULT);
    assert_eq!(
        c["exp"].to_string(),
        body["expires_on"].as_str().expect("string")
    );

    let uai = Identity::new("uai-client");
    let res_id = akvfs_emulator::imds::resource_id(&uai);
    for (k, v) in [
        ("client_id", "uai-client"),
        ("object_id", "uai-object"),
        ("msi_res_id", res_id.as_str()),
    ] {
        let mut q = base.to_vec();
        q.push((k, v));
        let (status, body, _) = get(&url, &q, META).await;
        assert_eq!(status, 200, "{k}: {body}");
        assert_eq!(body["client_id"], "uai-client", "{k}");
    }
    // The Rust SDK's api-version is accepted too.
    let (status, _, _) = get(
        &url,
        &[("api-version", "2019-08-01"), ("resource", VAULT)],
        META,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(emu.counts().op(Operation::TokenManagedIdentity), 5);
}

#[tokio::test]
async fn bad_requests_get_imds_errors() {
    let emu = emulator(None).await;
    let url = imds(&emu);
    let ok = [("api-version", "2018-02-01"), ("resource", VAULT)];
    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Pairs, Pairs, u16, &str)> = vec![
        (
            ok.to_vec(),
            vec![],
            400,
            "Required metadata header not specified",
        ),
        (
            ok.to_vec(),
            vec![("Metadata", "false")],
            400,
            "Required metadata header not specified",
        ),
        (
            ok.to_vec(),
            vec![("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")],
            400,
            "proxy",
        ),
        (
            vec![("resource", VAULT)],
            META.to_vec(),
            400,
            "'api-version' is missing",
        ),
        (
            vec![("api-version", "2017-09-01"), ("resource", VAULT)],
            META.to_vec(),
            400,
            "Invalid version",
        ),
        (
            vec![("api-version", "2018-02-01")],
            META.to_vec(),
            400,
            "'resource' is missing",
        ),
        (
            [
                ok.as_slice(),
                &[("client_id", "uai-client"), ("object_id", "uai-object")],
            ]
            .concat(),
            META.to_vec(),
            400,
            "Only one of",
        ),
        (
            [ok.as_slice(), &[("client_id", "nobody")]].concat(),
            META.to_vec(),
            400,
            "Identity not found",
        ),
        (
            [ok.as_slice(), &[("client_id", "not-managed")]].concat(),
            META.to_vec(),
            400,
            "Identity not found",
        ),
    ];
    for (query, headers, want_status, want_text) in cases {
        let (status, body, _) = get(&url, &query, &headers).await;
        assert_eq!(status, want_status, "{query:?} {headers:?}: {body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        let text = body["error_description"].as_str().expect("description");
        assert!(text.contains(want_text), "{query:?} {headers:?}: {text}");
    }
    let base = emu.info().imds_endpoint.clone().expect("served");
    let (status, _, _) = get(&format!("{base}/metadata/instance"), &ok, META).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn faults_apply_to_imds() {
    let emu = emulator(None).await;
    let url = imds(&emu);
    emu.inject_fault(
        Fault::status(503)
            .for_operation(Operation::TokenManagedIdentity)
            .times(1),
    )
    .expect("fault");
    let q = [("api-version", "2018-02-01"), ("resource", VAULT)];
    assert_eq!(get(&url, &q, META).await.0, 503);
    assert_eq!(get(&url, &q, META).await.0, 200);
}

#[tokio::test]
async fn arc_challenges_with_a_key_file_accepted_once() {
    let keys = std::env::temp_dir().join(format!("akvfs-arc-keys-{}", std::process::id()));
    let emu = emulator(Some(&keys)).await;
    let url = emu
        .info()
        .arc_identity_endpoint
        .clone()
        .expect("Arc served");
    assert_eq!(
        emu.info()
            .arc_imds_endpoint
            .as_deref()
            .map(|b| format!("{b}{PATH}")),
        Some(url.clone())
    );
    let q = [("api-version", "2020-06-01"), ("resource", VAULT)];
    let (status, _, challenge) = get(&url, &q, META).await;
    assert_eq!(status, 401);
    let challenge = challenge.expect("WWW-Authenticate");
    let file = challenge.strip_prefix("Basic realm=").expect("Basic realm");
    assert!(
        file.starts_with(keys.to_str().expect("utf-8")) && file.ends_with(".key"),
        "{file}"
    );
    let key = std::fs::read_to_string(file).expect("key file");
    let auth = format!("Basic {key}");
    let (status, body, _) = get(&url, &q, &[("Metadata", "true"), ("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_id"], emu.info().client_id.as_str());
    assert!(
        !std::path::Path::new(file).exists(),
        "a used key's file is removed"
    );
    // A key is good once; a wrong key gets a new challenge.
    let (status, _, again) = get(&url, &q, &[("Metadata", "true"), ("Authorization", &auth)]).await;
    assert_eq!(status, 401);
    assert!(again.is_some());
    // Arc serves its own api-version and the system-assigned identity only.
    assert_eq!(
        get(
            &url,
            &[("api-version", "2018-02-01"), ("resource", VAULT)],
            META
        )
        .await
        .0,
        400
    );
    let mut uq = q.to_vec();
    uq.push(("client_id", "uai-client"));
    assert_eq!(get(&url, &uq, META).await.0, 400);
    drop(emu);
    let _ = std::fs::remove_dir_all(keys);
}
