//! The thin `fuser` adapter: turns kernel requests into [`FsCore`] calls and
//! their results into replies. This is the only module that touches `Reply*`
//! types.
//!
//! Handlers never block a FUSE worker thread on the network: each request's
//! future is polled once in place, which answers everything served from
//! memory, and only a future that has to wait (a cold fetch) is moved onto
//! the tokio runtime to reply when it completes.
//!
//! `open` answers ENOSYS on purpose: the kernel then stops sending OPEN and
//! RELEASE and serves warm reads from its page cache with no daemon round
//! trip. That is safe because an inode's content never changes (see `fs`).
//! `flush` is left unimplemented so closes cost no round trip either.

use std::ffi::OsStr;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, Filesystem, Generation, INodeNo, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use futures::FutureExt;
use tokio::runtime::Handle;

use crate::error::FsError;
use crate::fs::FsCore;

mod notifier;
mod refuse;
mod reply;

pub use notifier::KernelNotifier;
use reply::{fail, file_attr, file_type, read_only, xattr_reply, Name};

/// The `fuser::Filesystem` for one mount.
pub struct AkvFs {
    core: Arc<FsCore>,
    rt: Handle,
    strict_open: bool,
}

impl AkvFs {
    pub fn new(core: Arc<FsCore>, rt: Handle, strict_open: bool) -> AkvFs {
        AkvFs {
            core,
            rt,
            strict_open,
        }
    }

    /// Runs `fut` to completion and hands its result to `done`: inline if it
    /// completes without waiting, otherwise on the runtime. A panic while
    /// polling becomes [`FsError::Internal`] (EIO for the caller) instead of
    /// ending the FUSE worker thread or leaving the request unanswered.
    fn run<T, F, D>(&self, fut: F, done: D)
    where
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        D: FnOnce(Result<T, FsError>) + Send + 'static,
        T: Send + 'static,
    {
        let _enter = self.rt.enter();
        let mut fut = Box::pin(AssertUnwindSafe(fut).catch_unwind());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => done(r.unwrap_or(Err(FsError::Internal))),
            // Polling again on the runtime registers a real waker.
            Poll::Pending => {
                self.rt
                    .spawn(async move { done(fut.await.unwrap_or(Err(FsError::Internal))) });
            }
        }
    }
}

impl Filesystem for AkvFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let core = Arc::clone(&self.core);
        let name = name.to_owned();
        let shown = name.clone();
        self.run(
            async move { core.lookup(parent.0, &name).await },
            move |r| match r {
                Ok(e) => reply.entry_with_ttls(
                    &e.entry_ttl,
                    &e.attr_ttl,
                    &file_attr(&e.attr),
                    Generation(0),
                ),
                Err(e) => reply.error(fail("lookup", &Name(&shown), &e)),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0) {
            Ok((attr, ttl)) => reply.attr(&ttl, &file_attr(&attr)),
            Err(e) => reply.error(fail("getattr", &ino.0, &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.strict_open {
            reply.error(Errno::ENOSYS);
            return;
        }
        // Without FOPEN_KEEP_CACHE the kernel drops the file's pages at each
        // open, so every open reads the daemon's current value.
        match self.core.getattr(ino.0) {
            Ok(_) => {
                tracing::debug!(ino = ino.0, uid = req.uid(), pid = req.pid(), "open");
                reply.opened(FileHandle(0), fuser::FopenFlags::empty());
            }
            Err(e) => reply.error(fail("open", &ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let core = Arc::clone(&self.core);
        self.run(
            async move { core.read(ino.0, offset, size).await },
            move |r| match r {
                Ok(data) => reply.data(data.bytes()),
                Err(e) => reply.error(fail("read", &ino.0, &e)),
            },
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // ENOSYS once, and the kernel stops sending FLUSH on every close.
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let core = Arc::clone(&self.core);
        self.run(async move { core.opendir(ino.0).await }, move |r| match r {
            Ok(fh) => reply.opened(FileHandle(fh), fuser::FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", &ino.0, &e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.core.readdir(fh.0, offset) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(fail("readdir", &ino.0, &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, self.core.file_count(), 0, 4096, 127, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.core.getxattr(ino.0, name) {
            Ok(v) => xattr_reply(reply, &v, size, "getxattr", &Name(name)),
            Err(e) => reply.error(fail("getxattr", &Name(name), &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.core.listxattr(ino.0) {
            Ok(v) => xattr_reply(reply, &v, size, "listxattr", &ino.0),
            Err(e) => reply.error(fail("listxattr", &ino.0, &e)),
        }
    }

    refuse::refuse_changes!();
}

#[cfg(test)]
mod tests;
