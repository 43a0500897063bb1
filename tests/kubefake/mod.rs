//! Starts tests/kubefake/kubefake.py and talks to its control endpoints.
//!
//! Use from an integration test with
//! `#[path = "kubefake/mod.rs"] mod kubefake;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running fake API server; killed on drop.
pub struct KubeFake {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    port: u16,
}

impl KubeFake {
    /// Starts the fake with BOOKMARK events every `bookmark_secs` seconds.
    pub fn start(bookmark_secs: f64) -> KubeFake {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubefake/kubefake.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                "--port",
                "0",
                "--bookmark-interval",
                &bookmark_secs.to_string(),
            ])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs tests/kubefake/kubefake.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("kubefake prints its URL");
        let url = line.trim().to_string();
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("kubefake URL ends in a port");
        KubeFake { child, url, port }
    }

    /// Writes a kubeconfig that points at the fake (no credentials), for
    /// `KUBECONFIG`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// One HTTP/1.0 request; returns the status code and the JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to kubefake");
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: kubefake\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send to kubefake");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read from kubefake");
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json = out
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (code, json)
    }

    /// A plain API call with a JSON body (`application/json`).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.request(method, path, "application/json", body.as_ref())
    }

    /// The next `count` requests matching `verb` (get, list, watch, create,
    /// update, patch, delete or `*`) on `resource` (a plural such as
    /// `leases`) fail with `code` (409, 410, 429, 500, ...).
    pub fn fail(&self, verb: &str, resource: &str, code: u16, count: u32) {
        let f =
            serde_json::json!({"verb": verb, "resource": resource, "code": code, "count": count});
        self.api("POST", "/_fake/fail", Some(f));
    }

    /// Every request served so far: `{verb, resource, namespace, name, subresource, code}`
    /// (`code` is set for injected failures only).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        match self.api("GET", "/_fake/requests", None).1 {
            serde_json::Value::Array(v) => v,
            _ => Vec::new(),
        }
    }

    /// Ends every open watch with an ERROR 410 Expired event and compacts the
    /// history, so that clients must relist.
    pub fn expire_watches(&self) {
        self.api("POST", "/_fake/watches/expire", None);
    }

    /// Ends every open watch normally (clients resume from their last
    /// resourceVersion).
    pub fn close_watches(&self) {
        self.api("POST", "/_fake/watches/close", None);
    }

    /// Drops the event history: watches from an older resourceVersion get 410.
    pub fn compact(&self) {
        self.api("POST", "/_fake/compact", None);
    }

    /// GET of one namespaced object by its API path, e.g.
    /// `/api/v1/namespaces/ns/configmaps/name`; `None` if absent.
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        match self.api("GET", path, None) {
            (200, v) => Some(v),
            _ => None,
        }
    }
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
