//! Reading a NodePublishVolume request: the volume attributes (vault, identity, mount options),
//! the pod's information, its service-account token and the volume capability, each checked,
//! with a message that names what is wrong and what to check.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::proto::volume_capability::AccessType;
use super::proto::NodePublishVolumeRequest;
use super::Refusal;
use crate::config::{parse_mount_options, parse_vault, MountConfig, MountOptions};

/// The audience kubelet must request tokens for (`CSIDriver.spec.tokenRequests`).
pub const AUDIENCE: &str = "api://AzureADTokenExchange";
/// Where kubelet puts the tokens it obtained for the pod.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
const SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
const KUBELET_PREFIX: &str = "csi.storage.k8s.io/";

/// The mount options a volume may set, under the config file's names. The
/// others (identity, trust, ownership, allow_other) belong to the node
/// plugin or come from the dedicated attributes and the pod's fsGroup.
pub const VOLUME_OPTIONS: [&str; 14] = [
    "file_mode",
    "dir_mode",
    "cache_bytes",
    "negative_cache_ttl",
    "fetch_timeout",
    "max_cold_lookups_per_10s",
    "max_concurrent_fetches",
    "refresh_interval",
    "idle_timeout",
    "max_stale",
    "max_requests_per_10s",
    "max_unverified",
    "strict_open",
    "root",
];

/// The volume attribute holding a SecretProviderClass's `objects` (the YAML string, as
/// written in the class's parameters): the volume's files become those views.
pub const OBJECTS: &str = "objects";
/// The most an `objects` attribute may hold; a class's object list is a few KiB.
pub const MAX_OBJECTS_BYTES: usize = 64 * 1024;

/// The pod a volume is published for, from kubelet's pod information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub service_account: String,
}

impl PodInfo {
    /// The subject of the pod's service-account tokens.
    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// A checked publish request. The token is held in a zeroizing buffer and
/// never shown (this type has no `Debug`).
pub struct Publish {
    pub volume_id: String,
    pub target: PathBuf,
    pub vault_url: String,
    pub client_id: String,
    pub tenant_id: String,
    pub pod: PodInfo,
    pub token: Zeroizing<String>,
    /// The pod's fsGroup: the files' group.
    pub group: Option<u32>,
    /// The mount options the volume set, as given (for the identity key and the state).
    pub options: BTreeMap<String, String>,
    /// The mount's configuration (its mountpoint is set when mounted).
    pub config: MountConfig,
}

/// Node-wide settings a publish builds on.
#[derive(Clone, Debug)]
pub struct NodeDefaults {
    pub tenant_id: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub verify_challenge_resource: bool,
    /// The most a volume's value cache may hold (`--max-volume-cache-bytes`), which is also
    /// the cap of a volume that sets no `cache_bytes`.
    pub max_cache_bytes: u64,
}

/// Reads and checks a request. The token's own claims are checked later
/// ([`super::token::check`]); here only its presence.
pub fn parse(mut req: NodePublishVolumeRequest, node: &NodeDefaults) -> Result<Publish, Refusal> {
    let bad = |m: String| Refusal::InvalidArgument(m);
    if req.volume_id.is_empty() {
        return Err(bad("the request has no volume_id".into()));
    }
    let target = PathBuf::from(&req.target_path);
    if !target.is_absolute() {
        return Err(bad(format!(
            "target_path {:?} is not an absolute path",
            req.target_path
        )));
    }
    if !req.readonly {
        return Err(bad(
            "the volume must be read-only: set readOnly: true on the pod's csi volume (akvfs serves secrets read-only)"
                .into(),
        ));
    }
    let group = check_capability(&req)?;
    // The token first, out of the maps, into a buffer that is wiped.
    let tokens = req
        .secrets
        .remove(TOKENS_KEY)
        .or_else(|| req.volume_context.remove(TOKENS_KEY))
        .map(Zeroizing::new);
    let ctx = &req.volume_context;
    let pod = pod_info(ctx)?;
    let token = pick_token(tokens)?;

    let mut vault = None;
    let mut client_id = None;
    let mut tenant_id = None;
    let mut options = BTreeMap::new();
    for (key, value) in ctx {
        match key.as_str() {
            "keyvaultName" => vault = Some(value.clone()),
            "clientID" => client_id = Some(value.clone()),
            "tenantId" | "tenantID" => tenant_id = Some(value.clone()),
            k if k.starts_with(KUBELET_PREFIX) => {}
            k if VOLUME_OPTIONS.contains(&k) => {
                options.insert(k.to_string(), value.clone());
            }
            OBJECTS if value.len() > MAX_OBJECTS_BYTES => {
                return Err(Refusal::ObjectsTooLarge {
                    bytes: value.len(),
                    max: MAX_OBJECTS_BYTES,
                })
            }
            OBJECTS => {
                options.insert(OBJECTS.to_string(), value.clone());
            }
            "secretProviderClass" => return Err(Refusal::ProviderClass),
            k => return Err(Refusal::UnknownAttribute { key: k.to_string() }),
        }
    }
    let vault = vault.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        bad(
            "the volume attribute keyvaultName is missing: set it to the vault's name or https URL"
                .into(),
        )
    })?;
    let vault_url = parse_vault(&vault).map_err(Refusal::VaultName)?;
    let client_id = client_id
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("the volume attribute clientID is missing: set it to the client id of the identity the pod's service account is federated with".into()))?;
    check_id("clientID", &client_id)?;
    let tenant_id = match tenant_id.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => node.tenant_id.clone().ok_or_else(|| {
            bad("no tenant: set the volume attribute tenantId, or AZURE_TENANT_ID / --tenant-id on the node plugin".into())
        })?,
    };
    check_id("tenantId", &tenant_id)?;
    let config = mount_config(&vault_url, &options, group, node)?;
    Ok(Publish {
        volume_id: req.volume_id,
        target,
        vault_url,
        client_id,
        tenant_id,
        pod,
        token,
        group,
        options,
        config,
    })
}

/// A mount volume, no flags but `ro`, and the pod's fsGroup if kubelet gave one.
fn check_capability(req: &NodePublishVolumeRequest) -> Result<Option<u32>, Refusal> {
    let bad = |m: String| Refusal::InvalidArgument(m);
    let cap = req
        .volume_capability
        .as_ref()
        .ok_or_else(|| bad("the request has no volume_capability".into()))?;
    let mount = match &cap.access_type {
        Some(AccessType::Mount(m)) => m,
        Some(AccessType::Block(_)) => {
            return Err(bad(
                "akvfs serves files, not block devices: use a filesystem (mount) volume".into(),
            ))
        }
        None => return Err(bad("the volume_capability has no access type".into())),
    };
    if let Some(flag) = mount.mount_flags.iter().find(|f| f.as_str() != "ro") {
        return Err(bad(format!(
            "unknown mount option {flag:?}: akvfs volumes take their options as volume attributes"
        )));
    }
    if mount.volume_mount_group.is_empty() {
        return Ok(None);
    }
    mount
        .volume_mount_group
        .parse::<u32>()
        .map(Some)
        .map_err(|_| {
            bad(format!(
                "volume_mount_group {:?} is not a numeric group id",
                mount.volume_mount_group
            ))
        })
}

fn pod_info(ctx: &HashMap<String, String>) -> Result<PodInfo, Refusal> {
    let get = |k: &str| ctx.get(k).filter(|v| !v.is_empty()).cloned();
    if ctx.get(EPHEMERAL).map(String::as_str) != Some("true") {
        return Err(Refusal::InvalidArgument(
            "akvfs serves only inline ephemeral volumes (a csi: volume in the pod spec); check that the CSIDriver csi.akvfs.io has volumeLifecycleModes: [Ephemeral]".into(),
        ));
    }
    match (get(POD_NAME), get(POD_NAMESPACE), get(POD_UID), get(SERVICE_ACCOUNT)) {
        (Some(name), Some(namespace), Some(uid), Some(service_account)) => Ok(PodInfo {
            name,
            namespace,
            uid,
            service_account,
        }),
        _ => Err(Refusal::InvalidArgument(
            "the request carries no pod information; check that the CSIDriver csi.akvfs.io has podInfoOnMount: true".into(),
        )),
    }
}

/// The token for [`AUDIENCE`] from kubelet's `{"<audience>": {"token": ..., "expirationTimestamp": ...}}`.
fn pick_token(tokens: Option<Zeroizing<String>>) -> Result<Zeroizing<String>, Refusal> {
    let missing = || {
        Refusal::Unauthenticated(format!(
            "no service-account token for audience {AUDIENCE}; check that the CSIDriver csi.akvfs.io has tokenRequests: [{{audience: {AUDIENCE}}}]"
        ))
    };
    let tokens = tokens.ok_or_else(missing)?;
    #[derive(serde::Deserialize)]
    struct Entry {
        token: Zeroizing<String>,
    }
    let mut map: HashMap<String, Entry> = serde_json::from_str(&tokens).map_err(|_| {
        Refusal::Unauthenticated(format!(
            "{TOKENS_KEY} is not the JSON kubelet writes ({{\"<audience>\": {{\"token\": ...}}}})"
        ))
    })?;
    map.remove(AUDIENCE)
        .map(|e| e.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(missing)
}

/// Client and tenant ids go into URLs and file names: GUIDs or domain names only.
fn check_id(attribute: &str, value: &str) -> Result<(), Refusal> {
    let ok = value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Refusal::InvalidArgument(format!(
            "volume attribute {attribute} {value:?} is not a GUID or domain name"
        )))
    }
}

/// The mount's configuration: the volume's options on top of the node's
/// settings, validated by the one definition of every mount option. Files are
/// root's; with an fsGroup they belong to that group and are group-readable,
/// without one they are readable by the pod's every user (the mount is only
/// visible inside the pod).
fn mount_config(
    vault_url: &str,
    options: &BTreeMap<String, String>,
    group: Option<u32>,
    node: &NodeDefaults,
) -> Result<MountConfig, Refusal> {
    let mut raw = MountOptions {
        vault: Some(vault_url.to_string()),
        path: Some(PathBuf::from("/")),
        ca_file: node.ca_file.clone(),
        disable_challenge_resource_verification: Some(!node.verify_challenge_resource),
        uid: Some(0),
        gid: Some(group.unwrap_or(0)),
        file_mode: Some(if group.is_some() { "0440" } else { "0444" }.into()),
        dir_mode: Some(if group.is_some() { "0550" } else { "0555" }.into()),
        allow_other: Some(true),
        ..Default::default()
    };
    if let Some(text) = options.get(OBJECTS) {
        let views = crate::config::spc::parse_spc(text, "volume attribute objects")
            .map_err(Refusal::Objects)?;
        raw.view = Some(views);
    }
    for (key, value) in options.iter().filter(|(k, _)| k.as_str() != OBJECTS) {
        if value.contains([',', '=']) {
            return Err(Refusal::InvalidArgument(format!(
                "volume attribute {key}: {value:?} is not a valid value"
            )));
        }
        let (o, _) = parse_mount_options(&format!("{key}={value}")).map_err(Refusal::Option)?;
        raw = raw.overlay(o);
    }
    let mut cfg = raw.validate(true, true).map_err(Refusal::Setting)?;
    cfg.cache.max_bytes = cache_cap(options, cfg.cache.max_bytes, node.max_cache_bytes)?;
    if group.is_some() {
        cfg.owner.file_mode |= 0o040;
        cfg.owner.dir_mode |= 0o050;
        // A view's own mode (an object's filePermission) is kept, made readable by the
        // group too, as every file of a volume with an fsGroup is.
        for v in &mut cfg.views {
            v.mode = v.mode.map(|m| m | ((m & 0o400) >> 3));
        }
    }
    Ok(cfg)
}

/// The volume's value-cache cap: its `cache_bytes` when within the node's maximum, which
/// keeps one identity from taking the node's (locked) memory; the maximum when it sets none.
fn cache_cap(options: &BTreeMap<String, String>, asked: u64, max: u64) -> Result<u64, Refusal> {
    let Some(given) = options.get("cache_bytes") else {
        return Ok(max);
    };
    if asked > max {
        return Err(Refusal::CacheCap {
            given: given.clone(),
            asked,
            max,
        });
    }
    Ok(asked)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
