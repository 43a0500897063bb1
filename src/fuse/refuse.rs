//! The handlers that only refuse: everything that would change the tree answers EROFS.

/// The `Filesystem` methods that would change the tree, each answering
/// EROFS (and logging it like any failure). Expanded inside the one
/// `impl Filesystem for AkvFs`; the mount is also `ro`, so the kernel refuses
/// most of these before they get here.
macro_rules! refuse_changes {
    () => {
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
    };
}

pub(super) use refuse_changes;
