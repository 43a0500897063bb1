//! Change notices: a per-cluster watcher lists the vault and publishes
//! metadata (never a value) to one object; each node watches that object and
//! GETs a changed secret once, at its own deterministic delay inside a window
//! sized so the whole fleet stays under half of the vault's request limit.
//!
//! A notice is only a hint. It decides *when* a node asks the vault, never
//! *what* the node serves: a value changes, and a secret is revoked, only on
//! the vault's own answer to the node's own GET. A forged or wrong notice
//! therefore costs at most one GET per secret it names per node, and changes
//! nothing.
//!
//! # Layout
//! - [`parse`]: the notice object's `data`, checked against hostile input.
//! - [`window`]: the window `W` and each node's delay inside it.
//! - [`node`]: what a node does with notices (schedule, fetch, fall back).
//! - [`start`]: a node's start-up from the notice: its listing, and its
//!   first vault calls paced.
//! - [`kube`]: the Kubernetes ConfigMap source (get + watch on one object).
//!
//! [`NoticeSource`] keeps the transport apart so another source (an Event
//! Grid MQTT subscription) can be added without touching the node logic.

pub mod kube;
pub mod node;
pub mod parse;
pub mod start;
pub mod window;

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::config::notice::{NoticeConfig, SourceSpec};
pub use node::{NoticeNode, NoticeStats};
pub use parse::{parse_notice, Notice, NoticeError, SecretMeta};
#[cfg(test)]
use window::{delay_ms_for, window_secs};

/// A heartbeat older than this means the watcher is gone: nodes fall back to
/// their own polling (3 x the watcher's 5 min heartbeat).
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// What a source reports.
#[derive(Clone, Debug)]
pub enum SourceEvent {
    /// The object's current content: the first read, a change, or a re-read
    /// after the watch was lost.
    Notice(Notice),
    /// The object exists but its content could not be used (the reason, for
    /// the log); the node treats the source as down.
    Invalid(NoticeError),
    /// The object does not exist (not yet published, or deleted).
    Missing,
    /// The connection to the source failed; it keeps retrying on its own.
    Down(String),
}

/// Where notices come from. `next` waits for the next event and never ends:
/// a source that loses its connection reports [`SourceEvent::Down`] and
/// keeps trying, with its own backoff.
#[async_trait::async_trait]
pub trait NoticeSource: Send + 'static {
    async fn next(&mut self) -> SourceEvent;
}

/// Builds the source a setting names.
pub fn source_for(spec: &SourceSpec) -> Box<dyn NoticeSource> {
    match spec {
        SourceSpec::ConfigMap { namespace, name } => {
            Box::new(kube::ConfigMapSource::new(namespace.clone(), name.clone()))
        }
    }
}

/// The ConfigMap `data` the watcher writes, as strings.
pub type NoticeData = BTreeMap<String, String>;

#[cfg(test)]
/// A source fed through a channel: for tests, simulations and in-process
/// publishers. Reports the source down when the sender is dropped.
pub struct ChannelSource(pub tokio::sync::mpsc::Receiver<SourceEvent>);

#[cfg(test)]
#[async_trait::async_trait]
impl NoticeSource for ChannelSource {
    async fn next(&mut self) -> SourceEvent {
        match self.0.recv().await {
            Some(ev) => ev,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests;
