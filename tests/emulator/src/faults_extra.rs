//! Hostile and unusual vault answers that the plain faults cannot express.
//!
//! Hostile and unusual vault answers that the plain faults in `faults` cannot express: a raw
//! `Retry-After` text (negative, non-numeric), list pages with an empty or looping `nextLink`,
//! secret bodies with a wrong version, a different-case name, no value or a huge value, a
//! challenge naming a foreign resource, timestamps from a skewed server clock, and token endpoint
//! errors with a chosen OAuth error and AADSTS code. Also records
//! the audience of every bearer token the vault receives, so a test can prove that no token for
//! another resource was ever sent to the vault host.
//!
//! They live in a table keyed by the emulator's vault URL (several emulators can run in one test
//! process) and are driven through [`inject_extra`], [`clear_extra`] and [`vault_audiences`].
//! Each one stays until cleared; all but `TokenError` apply to vault requests only.

use crate::http::{header, segments, set_header, Reply, Resp};
use crate::state::Shared;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::request::Parts;
use hyper::Method;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};

/// Which vault requests an extra fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraTarget {
    /// `GET /secrets/{name}` and `GET /secrets/{name}/{version}`.
    Get,
    /// `GET /secrets` (every page).
    List,
    /// Both.
    GetAndList,
}

/// A `nextLink` rewrite of list pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLink {
    /// `"nextLink": ""`.
    Empty,
    /// `nextLink` pointing back at the first page, forever.
    Loop,
}

/// An answer the plain fault kinds cannot give.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraFault {
    /// Answer 429 Throttled with this exact `Retry-After` text.
    RetryAfterText(ExtraTarget, String),
    /// Rewrite the `nextLink` of every list page.
    NextLink(NextLink),
    /// Secret bodies name another version (32 hex digits) than the one served.
    WrongVersion,
    /// Secret bodies name the secret in upper case.
    NameCase,
    /// Secret bodies without `value`.
    NoValue,
    /// Secret bodies whose value is this many bytes of `x`.
    HugeValue(usize),
    /// Every 401 challenge names this resource instead of Key Vault.
    ChallengeResource(String),
    /// `created` and `updated` in list items and secret bodies shifted by this many seconds
    /// (a server clock ahead, positive, or behind, negative).
    ClockSkew(i64),
    /// The token endpoint answers every request with this status, OAuth `error` and AADSTS
    /// code (e.g. 400 `unauthorized_client` 700016: the application was deleted).
    TokenError(u16, String, u32),
}

#[derive(Default)]
struct Extras {
    faults: Vec<ExtraFault>,
    audiences: BTreeSet<String>,
}

static TABLE: LazyLock<Mutex<HashMap<String, Extras>>> = LazyLock::new(Default::default);

fn with<R>(vault_url: &str, f: impl FnOnce(&mut Extras) -> R) -> R {
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    f(table
        .entry(vault_url.trim_end_matches('/').to_string())
        .or_default())
}

/// Adds `fault` to the emulator serving `vault_url`.
pub fn inject_extra(vault_url: &str, fault: ExtraFault) {
    with(vault_url, |x| x.faults.push(fault));
}

/// Removes every extra fault of the emulator serving `vault_url`, and the audiences recorded.
pub fn clear_extra(vault_url: &str) {
    with(vault_url, |x| {
        x.faults.clear();
        x.audiences.clear();
    });
}

/// The `aud` of every bearer token the vault at `vault_url` has received.
pub fn vault_audiences(vault_url: &str) -> BTreeSet<String> {
    with(vault_url, |x| x.audiences.clone())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    List,
    Other,
}

fn kind(parts: &Parts) -> Kind {
    if parts.method != Method::GET {
        return Kind::Other;
    }
    let mut segs = segments(parts.uri.path());
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    match segs.as_slice() {
        [s] if s.eq_ignore_ascii_case("secrets") => Kind::List,
        [s, _] if s.eq_ignore_ascii_case("secrets") => Kind::Get,
        [s, _, v] if s.eq_ignore_ascii_case("secrets") && !v.eq_ignore_ascii_case("versions") => {
            Kind::Get
        }
        _ => Kind::Other,
    }
}

fn applies(target: ExtraTarget, k: Kind) -> bool {
    matches!(
        (target, k),
        (ExtraTarget::Get | ExtraTarget::GetAndList, Kind::Get)
            | (ExtraTarget::List | ExtraTarget::GetAndList, Kind::List)
    )
}

fn token_audience(headers: &hyper::HeaderMap) -> Option<String> {
    let value = header(headers, "authorization")?;
    let (_, token) = value.trim().split_once(' ')?;
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get("aud")? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Runs before a vault request is handled: records the token's audience, and answers it when a
/// fault that replaces the whole answer applies.
pub(crate) fn before(shared: &Shared, parts: &Parts) -> Option<Reply> {
    let url = &shared.settings.vault_url;
    if let Some(aud) = token_audience(&parts.headers) {
        with(url, |x| x.audiences.insert(aud));
    }
    let k = kind(parts);
    let text = with(url, |x| {
        x.faults.iter().find_map(|f| match f {
            ExtraFault::RetryAfterText(t, text) if applies(*t, k) => Some(text.clone()),
            _ => None,
        })
    })?;
    // A Bearer token must still be present: an unauthenticated request gets the challenge.
    header(&parts.headers, "authorization")?;
    let mut resp = crate::vault::error(&crate::vault_error::VaultError::new(
        429,
        "Throttled",
        "Request was not processed because too many requests were received.",
    ));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&text) {
        resp.headers_mut().insert("retry-after", v);
    }
    shared.bump(crate::counts::special::FAULTED);
    Some(Reply::Send(resp))
}

/// Runs before a token request is handled: answers it when a `TokenError` fault is active.
pub(crate) fn token_answer(shared: &Shared) -> Option<Reply> {
    let (status, error, code) = with(&shared.settings.vault_url, |x| {
        x.faults.iter().find_map(|f| match f {
            ExtraFault::TokenError(s, e, c) => Some((*s, e.clone(), *c)),
            _ => None,
        })
    })?;
    shared.bump(crate::counts::special::FAULTED);
    Some(Reply::Send(crate::entra::error_response(
        status,
        &error,
        Some(code),
        "Injected answer of the token endpoint.",
    )))
}

/// Runs after a vault request was handled: rewrites the answer as the active faults say.
pub(crate) async fn after(shared: &Shared, parts: &Parts, reply: Reply) -> Reply {
    let url = shared.settings.vault_url.clone();
    let faults = with(&url, |x| x.faults.clone());
    if faults.is_empty() {
        return reply;
    }
    let Reply::Send(mut resp) = reply else {
        return reply;
    };
    let k = kind(parts);
    if resp.status() == 401 {
        for f in &faults {
            if let ExtraFault::ChallengeResource(resource) = f {
                let value = format!(
                    "Bearer authorization=\"{}/{}\", resource=\"{resource}\"",
                    shared.settings.authority_host, shared.settings.tenant_id
                );
                set_header(&mut resp, "www-authenticate", &value);
            }
        }
        return Reply::Send(resp);
    }
    if resp.status() != 200 || k == Kind::Other {
        return Reply::Send(resp);
    }
    let (head, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
        return Reply::Send(Resp::from_parts(head, Full::new(bytes)));
    };
    for f in &faults {
        rewrite(&url, parts, k, f, &mut doc);
    }
    let out = Bytes::from(doc.to_string());
    let mut resp = Resp::from_parts(head, Full::new(out.clone()));
    // A skewed server clock shows in its `Date` header as in its timestamps.
    for f in &faults {
        if let ExtraFault::ClockSkew(secs) = f {
            let now = std::time::SystemTime::now();
            let at = if *secs >= 0 {
                now + std::time::Duration::from_secs(secs.unsigned_abs())
            } else {
                now - std::time::Duration::from_secs(secs.unsigned_abs())
            };
            set_header(&mut resp, "date", &httpdate::fmt_http_date(at));
        }
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&out.len().to_string()) {
        resp.headers_mut().insert(hyper::header::CONTENT_LENGTH, v);
    }
    Reply::Send(resp)
}

fn shift(attrs: Option<&mut Value>, secs: i64) {
    let Some(Value::Object(a)) = attrs else {
        return;
    };
    for key in ["created", "updated"] {
        if let Some(t) = a.get(key).and_then(Value::as_i64) {
            a.insert(key.into(), Value::from(t + secs));
        }
    }
}

fn rewrite(url: &str, parts: &Parts, k: Kind, f: &ExtraFault, doc: &mut Value) {
    match (f, k) {
        (ExtraFault::NextLink(how), Kind::List) => {
            let link = match how {
                NextLink::Empty => String::new(),
                NextLink::Loop => format!(
                    "{}/secrets?api-version={}&maxresults=25",
                    url.trim_end_matches('/'),
                    crate::http::query_get(
                        &crate::http::query_pairs(parts.uri.query()),
                        "api-version"
                    )
                    .unwrap_or("7.6")
                ),
            };
            doc["nextLink"] = Value::from(link);
        }
        (ExtraFault::WrongVersion, Kind::Get) => {
            if let Some(id) = doc.get("id").and_then(Value::as_str) {
                if let Some((base, _)) = id.rsplit_once('/') {
                    doc["id"] = Value::from(format!("{base}/{}", "0123456789abcdef".repeat(2)));
                }
            }
        }
        (ExtraFault::NameCase, Kind::Get) => {
            if let Some(id) = doc.get("id").and_then(Value::as_str) {
                if let Some((base, rest)) = id.split_once("/secrets/") {
                    let (name, version) = rest.split_once('/').unwrap_or((rest, ""));
                    doc["id"] = Value::from(format!(
                        "{base}/secrets/{}/{version}",
                        name.to_ascii_uppercase()
                    ));
                }
            }
        }
        (ExtraFault::NoValue, Kind::Get) => {
            if let Value::Object(m) = doc {
                m.remove("value");
            }
        }
        (ExtraFault::HugeValue(n), Kind::Get) => {
            doc["value"] = Value::from("x".repeat(*n));
        }
        (ExtraFault::ClockSkew(secs), Kind::Get) => shift(doc.get_mut("attributes"), *secs),
        (ExtraFault::ClockSkew(secs), Kind::List) => {
            if let Some(Value::Array(items)) = doc.get_mut("value") {
                for item in items {
                    shift(item.get_mut("attributes"), *secs);
                }
            }
        }
        _ => {}
    }
}
