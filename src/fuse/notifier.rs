//! Kernel cache invalidation through fuser's notifier, for the refresher.

use std::ffi::OsStr;

use fuser::INodeNo;

/// Kernel cache invalidation through fuser's notifier. Called only from
/// background tasks, never from inside a request handler.
pub struct KernelNotifier(pub fuser::Notifier);

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
    }

    fn forget_inode(&self, ino: u64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            tracing::trace!(ino, "inval_inode: {e}");
        }
    }
}
