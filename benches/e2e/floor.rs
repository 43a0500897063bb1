//! The FUSE floor: the smallest `fuser` filesystem that serves the same files the way akvfs does
//! (entry and attribute TTL 60 s, `open` answered ENOSYS, reads from memory, the same mount
//! options, 2 worker threads, clone_fd), mounted from this process. It shows what any FUSE
//! filesystem costs on this kernel, so a gap to tmpfs can be split into the part FUSE itself
//! costs and the part akvfs adds.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

use crate::rig::Result;

const TTL: Duration = Duration::from_secs(60);

struct Files {
    names: Vec<String>,
    values: Vec<Vec<u8>>,
    by_name: HashMap<String, usize>,
    uid: u32,
    gid: u32,
    born: SystemTime,
}

impl Files {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = if ino == 1 {
            (FileType::Directory, 0o500, 0, 2)
        } else {
            let v = self.values.get((ino - 2) as usize)?;
            (FileType::RegularFile, 0o400, v.len() as u64, 1)
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            crtime: self.born,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl Filesystem for Files {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = (parent.0 == 1)
            .then(|| name.to_str().and_then(|n| self.by_name.get(n)))
            .flatten()
            .and_then(|&i| self.attr(i as u64 + 2));
        match found {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
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
        match ino
            .0
            .checked_sub(2)
            .and_then(|i| self.values.get(i as usize))
        {
            Some(v) => {
                let start = (offset as usize).min(v.len());
                let end = start.saturating_add(size as usize).min(v.len());
                reply.data(&v[start..end]);
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let dots = [(1u64, "."), (1u64, "..")];
        let entries = dots
            .iter()
            .map(|(i, n)| (*i, FileType::Directory, *n))
            .chain(
                self.names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (i as u64 + 2, FileType::RegularFile, n.as_str())),
            );
        for (i, (ino, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted floor filesystem; unmounted on drop.
pub struct Floor {
    pub path: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Floor {
    pub fn mount(at: &Path, files: &[(String, String)]) -> Result<Floor> {
        let fs = Files {
            names: files.iter().map(|(n, _)| n.clone()).collect(),
            values: files.iter().map(|(_, v)| v.as_bytes().to_vec()).collect(),
            by_name: files
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.clone(), i))
                .collect(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            born: SystemTime::now(),
        };
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("e2e-floor".into()),
            MountOption::CUSTOM("subtype=e2efloor".into()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoExec,
            MountOption::NoAtime,
            MountOption::RO,
        ];
        cfg.n_threads = Some(2);
        cfg.clone_fd = true;
        let session = fuser::Session::new(fs, at, &cfg)
            .and_then(|s| s.spawn())
            .map_err(|e| format!("cannot mount the FUSE floor on {}: {e}", at.display()))?;
        crate::rig::remember_unmount(at);
        Ok(Floor {
            path: at.to_path_buf(),
            session: Some(session),
        })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
        crate::rig::forget_unmount(&self.path);
    }
}
