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
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use futures::FutureExt;
use tokio::runtime::Handle;

use crate::error::FsError;
use crate::fs::{Attr, FsCore, Kind};
use crate::text::one_line;

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

/// Logs why a request failed and returns the errno to reply with. A program
/// retrying a failing read in a loop gets one warning per file and errno
/// every 30 seconds; the repeats go to debug.
fn fail(op: &str, what: &dyn std::fmt::Display, err: &FsError) -> Errno {
    let errno = err.errno();
    if err.log_level_is_quiet() || !first_in_a_while(&format!("{what}/{errno}")) {
        tracing::debug!(op, target_name = %what, errno, "{}", one_line(err));
    } else {
        tracing::warn!(op, target_name = %what, errno, "{}", one_line(err));
    }
    Errno::from_i32(errno)
}

fn first_in_a_while(key: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};
    static SEEN: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if seen.len() > 10_000 {
        seen.retain(|_, t| now.duration_since(*t) < Duration::from_secs(30));
    }
    match seen.get(key) {
        Some(t) if now.duration_since(*t) < Duration::from_secs(30) => false,
        _ => {
            seen.insert(key.to_string(), now);
            true
        }
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

/// Shows a name for logs: secret names are not secret, values never pass here.
struct Name<'a>(&'a OsStr);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.to_string_lossy())
    }
}

fn read_only(op: &str, what: &dyn std::fmt::Display) -> Errno {
    fail(op, what, &FsError::ReadOnly)
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

    // Everything that would change the tree answers EROFS. The mount is also
    // `ro`, so the kernel refuses most of these before they get here.

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(read_only("setattr", &ino.0));
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        name: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(read_only("mknod", &Name(name)));
    }

    fn mkdir(
        &self,
        _req: &Request,
        _p: INodeNo,
        name: &OsStr,
        _m: u32,
        _u: u32,
        reply: ReplyEntry,
    ) {
        reply.error(read_only("mkdir", &Name(name)));
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.error(read_only("unlink", &Name(name)));
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.error(read_only("rmdir", &Name(name)));
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, name: &OsStr, _t: &Path, reply: ReplyEntry) {
        reply.error(read_only("symlink", &Name(name)));
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        name: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(read_only("rename", &Name(name)));
    }

    fn link(&self, _req: &Request, ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(read_only("link", &ino.0));
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(read_only("write", &ino.0));
    }

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        name: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        reply.error(read_only("create", &Name(name)));
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        name: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(read_only("setxattr", &Name(name)));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.error(read_only("removexattr", &Name(name)));
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(read_only("fallocate", &ino.0));
    }
}

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

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32, op: &str, what: &dyn std::fmt::Display) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(fail(op, what, &FsError::Range));
    }
}

#[cfg(test)]
mod tests;
