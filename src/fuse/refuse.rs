//! The handlers that only refuse: everything that would change the tree answers EROFS.

/// One refusing handler: `op(args) Reply => what the log names` (an inode
/// number or a name). The request and the reply are the same for every one.
macro_rules! refuse {
    ($op:ident($($arg:ident: $ty:ty),*) $reply:ty => $what:expr) => {
        fn $op(&self, _req: &Request, $($arg: $ty,)* reply: $reply) {
            reply.error(read_only(stringify!($op), $what));
        }
    };
}

/// The `Filesystem` methods that would change the tree, each answering
/// EROFS (and logging it like any failure). Expanded inside the one
/// `impl Filesystem for AkvFs`; the mount is also `ro`, so the kernel refuses
/// most of these before they get here.
macro_rules! refuse_changes {
    () => {
        $crate::fuse::refuse::refuse!(setattr(
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
            _flags: Option<fuser::BsdFileFlags>
        ) ReplyAttr => &ino.0);
        $crate::fuse::refuse::refuse!(mknod(_p: INodeNo, name: &OsStr, _m: u32, _u: u32, _r: u32) ReplyEntry => &Name(name));
        $crate::fuse::refuse::refuse!(mkdir(_p: INodeNo, name: &OsStr, _m: u32, _u: u32) ReplyEntry => &Name(name));
        $crate::fuse::refuse::refuse!(unlink(_p: INodeNo, name: &OsStr) ReplyEmpty => &Name(name));
        $crate::fuse::refuse::refuse!(rmdir(_p: INodeNo, name: &OsStr) ReplyEmpty => &Name(name));
        $crate::fuse::refuse::refuse!(symlink(_p: INodeNo, name: &OsStr, _t: &Path) ReplyEntry => &Name(name));
        $crate::fuse::refuse::refuse!(rename(
            _p: INodeNo,
            name: &OsStr,
            _np: INodeNo,
            _nn: &OsStr,
            _f: RenameFlags
        ) ReplyEmpty => &Name(name));
        $crate::fuse::refuse::refuse!(link(ino: INodeNo, _np: INodeNo, _nn: &OsStr) ReplyEntry => &ino.0);
        $crate::fuse::refuse::refuse!(write(
            ino: INodeNo,
            _fh: FileHandle,
            _offset: u64,
            _data: &[u8],
            _wf: WriteFlags,
            _flags: OpenFlags,
            _lo: Option<LockOwner>
        ) ReplyWrite => &ino.0);
        $crate::fuse::refuse::refuse!(create(_p: INodeNo, name: &OsStr, _m: u32, _u: u32, _f: i32) ReplyCreate => &Name(name));
        $crate::fuse::refuse::refuse!(setxattr(_ino: INodeNo, name: &OsStr, _v: &[u8], _f: i32, _p: u32) ReplyEmpty => &Name(name));
        $crate::fuse::refuse::refuse!(removexattr(_ino: INodeNo, name: &OsStr) ReplyEmpty => &Name(name));
        $crate::fuse::refuse::refuse!(fallocate(ino: INodeNo, _fh: FileHandle, _o: u64, _l: u64, _m: i32) ReplyEmpty => &ino.0);
    };
}

pub(super) use refuse;
pub(super) use refuse_changes;
