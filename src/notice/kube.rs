//! Notices from one Kubernetes ConfigMap, read with `get` and `watch` only,
//! both on that one object (a `metadata.name` field selector), so the node's
//! Role can name it in `resourceNames` and grant nothing else.
//!
//! The follower gets the object, then watches from its `resourceVersion`,
//! moving that version forward with every event and bookmark, and watches
//! again from it when the server ends a watch. A `410 Gone` (the version is
//! too old for the server's watch cache) makes it get the object again: the
//! object holds the whole state, so nothing is lost across the gap. Client
//! configuration is kube's own: in-cluster (service account) or
//! `KUBECONFIG`.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};
use tokio::sync::mpsc;

use super::{parse_notice, NoticeError, NoticeSource, SourceEvent};

/// How long the server keeps one watch open before it is renewed.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// The ConfigMap `namespace/name` as a [`NoticeSource`].
pub struct ConfigMapSource {
    namespace: String,
    name: String,
    client: Option<kube::Client>,
    rx: Option<mpsc::Receiver<SourceEvent>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ConfigMapSource {
    /// Uses kube's default client configuration (in-cluster, or
    /// `KUBECONFIG`), built on first use.
    pub fn new(namespace: String, name: String) -> ConfigMapSource {
        ConfigMapSource {
            namespace,
            name,
            client: None,
            rx: None,
            task: None,
        }
    }

    /// Uses the given client (a test server, a simulation).
    pub fn with_client(client: kube::Client, namespace: String, name: String) -> ConfigMapSource {
        let mut s = ConfigMapSource::new(namespace, name);
        s.client = Some(client);
        s
    }
}

impl Drop for ConfigMapSource {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[async_trait::async_trait]
impl NoticeSource for ConfigMapSource {
    /// Cancel-safe: the follower runs as its own task and hands events over
    /// a channel.
    async fn next(&mut self) -> SourceEvent {
        if self.rx.is_none() {
            let (tx, rx) = mpsc::channel(16);
            let f = Follower {
                client: self.client.take(),
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                tx,
            };
            self.task = Some(tokio::spawn(f.run()));
            self.rx = Some(rx);
        }
        match self.rx.as_mut() {
            Some(rx) => match rx.recv().await {
                Some(ev) => ev,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

struct Follower {
    client: Option<kube::Client>,
    namespace: String,
    name: String,
    tx: mpsc::Sender<SourceEvent>,
}

/// Why one watch ended.
enum Ended {
    /// The server closed it (timeout): watch again from the same version.
    Closed,
    /// 410 Gone: get the object again.
    Gone,
    /// Another failure, already reported: back off, then get again.
    Failed,
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(5)) + Duration::from_millis(fastrand::u64(0..1000))
}

fn event_for(cm: &ConfigMap) -> SourceEvent {
    match cm.data.as_ref() {
        None => SourceEvent::Invalid(NoticeError::NoData),
        Some(data) => match parse_notice(data) {
            Ok(n) => SourceEvent::Notice(n),
            Err(e) => SourceEvent::Invalid(e),
        },
    }
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!(
            "{} {}",
            s.code,
            s.message.chars().take(200).collect::<String>()
        ),
        other => other.to_string().chars().take(300).collect(),
    }
}

impl Follower {
    async fn send(&self, ev: SourceEvent) -> bool {
        self.tx.send(ev).await.is_ok()
    }

    async fn run(mut self) {
        // Both ring and aws-lc-rs are linked (the Azure SDK's transport brings
        // the other), so rustls cannot pick on its own; a provider someone
        // installed first stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut attempt = 0;
        let client = loop {
            if let Some(c) = self.client.take() {
                break c;
            }
            match kube::Client::try_default().await {
                Ok(c) => break c,
                Err(e) => {
                    let why = format!("no Kubernetes client configuration ({})", describe(&e));
                    if !self.send(SourceEvent::Down(why)).await {
                        return;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        };
        let api: Api<ConfigMap> = Api::namespaced(client, &self.namespace);
        attempt = 0;
        loop {
            // Get: the whole state, and the version to watch from.
            let rv = match api.get_opt(&self.name).await {
                Ok(Some(cm)) => {
                    if !self.send(event_for(&cm)).await {
                        return;
                    }
                    cm.metadata.resource_version.unwrap_or_default()
                }
                // Watch from "now": its creation arrives as an event.
                Ok(None) => {
                    if !self.send(SourceEvent::Missing).await {
                        return;
                    }
                    String::new()
                }
                Err(e) => {
                    let why = format!(
                        "getting ConfigMap {}/{}: {}",
                        self.namespace,
                        self.name,
                        describe(&e)
                    );
                    if !self.send(SourceEvent::Down(why)).await {
                        return;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            };
            let mut rv = rv;
            loop {
                match self.watch(&api, &mut rv).await {
                    Some(Ended::Closed) => {
                        attempt = 0;
                        continue;
                    }
                    Some(Ended::Gone) => {
                        tracing::debug!(
                            "the notice watch's version expired (410); reading the object again"
                        );
                        break;
                    }
                    Some(Ended::Failed) => {
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        break;
                    }
                    None => return,
                }
            }
        }
    }

    /// Reports the watch down (`why`: what the API server or the connection
    /// said); `None` when nobody listens.
    async fn watch_failed(&self, why: String) -> Option<Ended> {
        let why = format!("watching ConfigMap {}/{}: {why}", self.namespace, self.name);
        self.send(SourceEvent::Down(why))
            .await
            .then_some(Ended::Failed)
    }

    /// One watch from `rv`, moving it forward. `None` when nobody listens.
    async fn watch(&self, api: &Api<ConfigMap>, rv: &mut String) -> Option<Ended> {
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={}", self.name))
            .timeout(WATCH_TIMEOUT_SECS);
        let stream = match api.watch(&wp, rv).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Some(Ended::Gone),
            Err(e) => return self.watch_failed(describe(&e)).await,
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let ev = match stream.next().await {
                None => return Some(Ended::Closed),
                Some(Ok(ev)) => ev,
                Some(Err(e)) => return self.watch_failed(describe(&e)).await,
            };
            let out = match ev {
                WatchEvent::Added(cm) | WatchEvent::Modified(cm) => {
                    if cm.metadata.name.as_deref() != Some(self.name.as_str()) {
                        continue;
                    }
                    if let Some(v) = &cm.metadata.resource_version {
                        rv.clone_from(v);
                    }
                    event_for(&cm)
                }
                WatchEvent::Deleted(cm) => {
                    if let Some(v) = &cm.metadata.resource_version {
                        rv.clone_from(v);
                    }
                    SourceEvent::Missing
                }
                WatchEvent::Bookmark(b) => {
                    rv.clone_from(&b.metadata.resource_version);
                    continue;
                }
                WatchEvent::Error(s) if s.code == 410 => return Some(Ended::Gone),
                WatchEvent::Error(s) => {
                    let why = format!(
                        "{} {}",
                        s.code,
                        s.message.chars().take(200).collect::<String>()
                    );
                    return self.watch_failed(why).await;
                }
            };
            if !self.send(out).await {
                return None;
            }
        }
    }
}
