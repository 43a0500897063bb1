//! Kernel cache invalidation through fuser's notifier, for the refresher.

use std::ffi::OsStr;

use std::sync::Arc;

use fuser::INodeNo;

use crate::fs::FsCore;

/// Kernel cache invalidation through fuser's notifier. Called only from
/// background tasks, never from inside a request handler. Holds the core to
/// find the view paths that show a secret.
pub struct KernelNotifier(pub fuser::Notifier, pub Arc<FsCore>);

impl crate::refresh::KernelCache for KernelNotifier {
    fn forget_name(&self, name: &str) {
        // ENOENT just means the kernel had nothing cached.
        if let Err(e) = self
            .0
            .inval_entry(INodeNo(crate::fs::ROOT_INO), OsStr::new(name))
        {
            tracing::trace!(name, "inval_entry: {e}");
        }
        // A certificate's directory is bound to one version like a file.
        if let Err(e) = self
            .0
            .inval_entry(INodeNo(crate::fs::special::CERTS_INO), OsStr::new(name))
        {
            tracing::trace!(name, "inval_entry .certs: {e}");
        }
        // And a key's files, bound to one key version.
        for ext in [".pem", ".jwk"] {
            let file = format!("{name}{ext}");
            if let Err(e) = self
                .0
                .inval_entry(INodeNo(crate::fs::special::KEYS_INO), OsStr::new(&file))
            {
                tracing::trace!(name, "inval_entry .keys: {e}");
            }
        }
        // So is each view of the secret's latest version.
        for (parent, file) in self.1.view_dentries_of(name) {
            if let Err(e) = self.0.inval_entry(INodeNo(parent), OsStr::new(&file)) {
                tracing::trace!(name, "inval_entry of a view: {e}");
            }
        }
    }

    fn forget_inode(&self, ino: u64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            tracing::trace!(ino, "inval_inode: {e}");
        }
    }
}
