//! What every handler shares: the errno reply with its rate-limited log line, attributes in fuser's form, and the extended-attribute size protocol.

use std::ffi::OsStr;

use fuser::{Errno, FileAttr, FileType, INodeNo, ReplyXattr};

use crate::error::FsError;
use crate::fs::{Attr, Kind};
use crate::text::one_line;

/// Logs why a request failed and returns the errno to reply with. A program
/// retrying a failing read in a loop gets one warning per file and errno
/// every 30 seconds; the repeats go to debug.
pub(super) fn fail(op: &str, what: &dyn std::fmt::Display, err: &FsError) -> Errno {
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
    let mut seen = crate::sync::lock(SEEN.get_or_init(Default::default));
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

pub(super) fn file_attr(a: &Attr) -> FileAttr {
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

pub(super) fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

/// Shows a name for logs: secret names are not secret, values never pass here.
pub(super) struct Name<'a>(pub(super) &'a OsStr);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.to_string_lossy())
    }
}

pub(super) fn read_only(op: &str, what: &dyn std::fmt::Display) -> Errno {
    fail(op, what, &FsError::ReadOnly)
}

/// Answers an extended-attribute request: the size when asked for it (size
/// 0), the value when it fits, ERANGE otherwise.
pub(super) fn xattr_reply(
    reply: ReplyXattr,
    value: &[u8],
    size: u32,
    op: &str,
    what: &dyn std::fmt::Display,
) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(fail(op, what, &FsError::Range));
    }
}
