//! Workload identity: the federated token file, re-read for every new access token.

use super::*;

/// A client assertion read from the projected service-account token file each
/// time a new access token is requested.
#[derive(Debug)]
pub struct FederatedTokenFile {
    pub(super) path: PathBuf,
}

#[async_trait::async_trait]
impl ClientAssertion for FederatedTokenFile {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_wiped(&path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let bytes = read.map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "cannot read the federated token file {}: {e}; check the projected service account token volume",
                    self.path.display()
                ),
            )
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "the federated token file {} is not UTF-8 text; check the projected service account token volume",
                    self.path.display()
                ),
            )
        })?;
        // The trait hands the SDK a plain String; that copy lives only for
        // the token request (docs/SECURITY.md).
        Ok(text.trim().to_string())
    }
}

/// Reads a file into one zeroizing buffer sized from its length, so no
/// partial copy is left by a reallocation (a file that grows meanwhile
/// reallocates once, into a buffer that is wiped too).
fn read_wiped(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut buf = Zeroizing::new(Vec::with_capacity(len + 1));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        let n = file.read(&mut chunk[..])?;
        if n == 0 {
            return Ok(buf);
        }
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + n) * 2));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
