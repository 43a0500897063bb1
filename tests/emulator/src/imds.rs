//! The Azure Instance Metadata Service (and Azure Arc) managed identity endpoint, plain HTTP.
//!
//! The Azure Instance Metadata Service's managed identity endpoint, as an Azure VM sees it at
//! `http://169.254.169.254`, served over plain HTTP on an address the caller chooses.
//!
//! `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…
//! [&client_id=…|&object_id=…|&msi_res_id=…]` with the header `Metadata: true`. Without an
//! identity parameter the token is for the system-assigned identity (the default identity).
//! The answer is the token JSON with every number as a string:
//! `{"access_token","client_id","expires_in","expires_on","ext_expires_in","not_before",
//! "resource","token_type":"Bearer"}`. Errors are `{"error","error_description"}`, all 400 for
//! bad requests and unknown identities, as IMDS answers them.
//!
//! The same listener can serve the Azure Arc variant (see [`ArcKeys`]): the first request is
//! answered 401 with `WWW-Authenticate: Basic realm=<key file>`, the second must carry
//! `Authorization: Basic <content of that file>`.

use crate::config::Identity;
use crate::counts::Operation;
use crate::http::{header, json, query_get, query_pairs, set_header, Reply, Resp};
use crate::msi::{find_managed, mint};
use crate::server::{apply_faults, Family};
use crate::serving::{accept_loop, serve_connection, ConnectionReset};
use crate::state::Shared;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Path of the token endpoint (IMDS and Arc).
pub const PATH: &str = "/metadata/identity/oauth2/token";
/// API versions IMDS accepts for the token endpoint (the SDKs send 2018-02-01 or 2019-08-01).
pub const API_VERSIONS: &[&str] = &[
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
];
/// The API version Azure Arc's agent serves.
pub const ARC_API_VERSION: &str = "2020-06-01";
/// Subscription and resource group of the emulator's user-assigned identities' resource ids.
pub const RESOURCE_ID_PREFIX: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator/providers/Microsoft.ManagedIdentity/userAssignedIdentities/";

/// The resource id (`msi_res_id`) of an identity: [`RESOURCE_ID_PREFIX`] and its client id.
pub fn resource_id(identity: &Identity) -> String {
    format!("{RESOURCE_ID_PREFIX}{}", identity.client_id)
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone)]
pub(crate) enum Flavor {
    /// An Azure VM's IMDS.
    Imds,
    /// An Azure Arc agent: challenge with a key file in `keys`.
    Arc(Arc<ArcKeys>),
}

/// Where the Arc flavour writes the key files it challenges with. Each challenge writes a new
/// random key to a new file `<dir>/<random>.key` (mode 0600); a key is accepted once.
#[derive(Debug)]
pub(crate) struct ArcKeys {
    dir: PathBuf,
    issued: std::sync::Mutex<Vec<(PathBuf, String)>>,
}

impl ArcKeys {
    pub(crate) fn new(dir: PathBuf) -> Self {
        ArcKeys {
            dir,
            issued: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn issue(&self) -> Result<PathBuf, std::io::Error> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self
            .dir
            .join(format!("{}.key", crate::util::random_hex(16)));
        let key = crate::util::random_hex(32);
        crate::util::write_private(&path, key.as_bytes())?;
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.push((path.clone(), key));
        Ok(path)
    }

    /// Accepts `presented` once if it is an issued key; removes its file.
    fn redeem(&self, presented: &str) -> bool {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = issued.iter().position(|(_, k)| k == presented.trim()) else {
            return false;
        };
        let (path, _) = issued.remove(i);
        let _ = std::fs::remove_file(path);
        true
    }
}

/// An error in IMDS's shape.
pub(crate) fn error(status: u16, error: &str, description: &str) -> Resp {
    json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Serves plain HTTP on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    flavor: Flavor,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    accept_loop(listener, shutdown, "IMDS ", |tcp, peer| {
        let shared = shared.clone();
        let flavor = flavor.clone();
        let handler = move |req: Request<Incoming>| {
            let shared = shared.clone();
            let flavor = flavor.clone();
            async move {
                match handle(&shared, &flavor, req).await {
                    Reply::Send(resp) => Ok(resp),
                    Reply::Reset => Err(ConnectionReset),
                }
            }
        };
        tokio::spawn(serve_connection(tcp, handler, stop.clone(), peer, "IMDS "));
    })
    .await;
}

async fn handle(shared: &Arc<Shared>, flavor: &Flavor, req: Request<Incoming>) -> Reply {
    let (parts, _body) = req.into_parts();
    tracing::debug!(method = %parts.method, path = %parts.uri.path(), "IMDS request");
    if !parts.uri.path().eq_ignore_ascii_case(PATH) {
        return error(404, "not_found", "The requested path was not found.").into();
    }
    let op = Operation::TokenManagedIdentity;
    if let Some(reply) = apply_faults(shared, op, Family::ManagedIdentity).await {
        return reply;
    }
    shared.bump(op.name());
    issue(shared, flavor, &parts).into()
}

fn issue(shared: &Shared, flavor: &Flavor, parts: &Parts) -> Resp {
    if parts.method != Method::GET {
        return error(
            405,
            "invalid_request",
            "The requested method is not supported; use GET.",
        );
    }
    if header(&parts.headers, "x-forwarded-for").is_some() {
        return error(
            400,
            "invalid_request",
            "Requests through a proxy (X-Forwarded-For) are not accepted.",
        );
    }
    if !header(&parts.headers, "metadata").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return error(
            400,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    let q = query_pairs(parts.uri.query());
    match (query_get(&q, "api-version"), flavor) {
        (None, _) => {
            return error(
                400,
                "invalid_request",
                "Required query variable 'api-version' is missing",
            )
        }
        (Some(ARC_API_VERSION), Flavor::Arc(_)) => {}
        (Some(v), Flavor::Imds) if API_VERSIONS.contains(&v) => {}
        (Some(_), _) => return error(400, "invalid_request", "Invalid version"),
    }
    let Some(resource) = query_get(&q, "resource").filter(|r| !r.is_empty()) else {
        return error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let client_id = query_get(&q, "client_id");
    let object_id = query_get(&q, "object_id").or_else(|| query_get(&q, "principal_id"));
    let res_id = query_get(&q, "msi_res_id").or_else(|| query_get(&q, "mi_res_id"));
    let given = [client_id, object_id, res_id]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given > 1 {
        return error(
            400,
            "invalid_request",
            "Only one of client_id, object_id and msi_res_id may be given",
        );
    }
    if let Flavor::Arc(keys) = flavor {
        if given > 0 {
            return error(
                400,
                "invalid_request",
                "User-assigned identities are not supported by Azure Arc",
            );
        }
        let presented = header(&parts.headers, "authorization").and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
        match presented {
            Some(key) if keys.redeem(key) => {}
            _ => return arc_challenge(keys),
        }
    }
    let identity = find_managed(shared, client_id, object_id, res_id);
    let Some(identity) = identity else {
        return error(400, "invalid_request", "Identity not found");
    };
    let (token, exp, lifetime) = mint(shared, &identity, resource);
    let now = exp - lifetime;
    json(
        200,
        &json!({
            "access_token": token,
            "client_id": identity.client_id,
            "expires_in": lifetime.to_string(),
            "expires_on": exp.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

fn arc_challenge(keys: &ArcKeys) -> Resp {
    match keys.issue() {
        Ok(path) => {
            let mut resp = error(
                401,
                "unauthorized",
                "Present the content of the file named in WWW-Authenticate as Basic credentials",
            );
            set_header(
                &mut resp,
                "www-authenticate",
                &format!("Basic realm={}", path.display()),
            );
            resp
        }
        Err(e) => error(
            500,
            "server_error",
            &format!("cannot write the challenge key file: {e}"),
        ),
    }
}
