//! View inodes as the kernel sees them: binding a resolved node to an
//! inode, attributes, reads from the bound bytes, directory listings, the
//! bound version's properties and forgetting.

use std::sync::Arc;

use super::view::{Resolved, VNode, Views, VIEW_BASE, VIEW_DYNAMIC};
use super::{lock, unix_time, Attr, DirEntry, FsCore, Kind, ReadData};
use crate::error::FsError;
use crate::secret::SecretProps;

impl FsCore {
    /// Binds a resolved view node to an inode (the same one while the
    /// kernel holds it) and counts a lookup.
    pub(super) fn bind_view(&self, r: Resolved) -> Attr {
        let Some(v) = self.views() else {
            return self.root_attr();
        };
        let mut nodes = lock(&v.nodes);
        let ino = match nodes.by_what.get(&r.what).copied() {
            Some(ino) => ino,
            None => {
                nodes.next += 1;
                let ino = VIEW_DYNAMIC + nodes.next;
                nodes.by_what.insert(r.what.clone(), ino);
                ino
            }
        };
        let node = nodes.by_ino.entry(ino).or_insert(VNode {
            r: Resolved {
                what: r.what.clone(),
                bytes: None,
                props: None,
                mtime: None,
                history: None,
            },
            size: 0,
            lookups: 0,
            revoked: None,
        });
        if node.r.bytes.is_none() && node.r.history.is_none() || node.revoked.is_some() {
            node.size = r.bytes.as_ref().map_or(0, |b| b.bytes().len() as u64);
            node.r = r;
        }
        node.lookups += 1;
        node.revoked = None;
        self.view_node_attr(v, ino, node)
    }

    pub(super) fn view_dir_attr(&self, ino: u64) -> Attr {
        let mut attr = self.root_attr();
        attr.ino = ino;
        attr
    }

    pub(super) fn view_node_attr(&self, v: &Views, ino: u64, node: &VNode) -> Attr {
        let mut attr = self.view_dir_attr(ino);
        let t = unix_time(node.r.mtime, self.mounted_at);
        attr.mtime = t;
        attr.ctime = t;
        attr.crtime = t;
        if node.r.history.is_none() {
            attr.kind = Kind::File;
            attr.size = node.size;
            attr.perm = v.specs[node.r.what.view()]
                .mode
                .unwrap_or(self.owner.file_mode);
            attr.nlink = 1;
        }
        attr
    }

    pub(super) fn view_getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let v = self.views().ok_or(FsError::NoEntry)?;
        if v.dir_index(ino).is_some() {
            return Ok(self.view_dir_attr(ino));
        }
        let nodes = lock(&v.nodes);
        let node = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        Ok(self.view_node_attr(v, ino, node))
    }

    pub(super) fn view_forget(&self, ino: u64, n: u64) {
        let Some(v) = self.views() else { return };
        let mut nodes = lock(&v.nodes);
        let gone = nodes.by_ino.get_mut(&ino).is_some_and(|node| {
            node.lookups = node.lookups.saturating_sub(n);
            node.lookups == 0
        });
        if gone {
            if let Some(node) = nodes.by_ino.remove(&ino) {
                nodes.by_what.remove(&node.r.what);
                // The node's bytes are wiped when the last reader drops them.
            }
        }
    }

    /// Reads a view file: from the bytes bound to its inode, never the vault.
    pub(super) fn view_read(&self, ino: u64, offset: u64, size: u32) -> Result<ReadData, FsError> {
        let v = self.views().ok_or(FsError::NoEntry)?;
        if v.dir_index(ino).is_some() {
            return Err(FsError::IsDir);
        }
        let nodes = lock(&v.nodes);
        let node = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        if let Some(err) = &node.revoked {
            let i = node.r.what.view();
            let name = v.specs[i].name.clone();
            return Err(self.owner(i)?.vault_err(&name, err.clone()));
        }
        if node.r.history.is_some() {
            return Err(FsError::IsDir);
        }
        let bytes = node.r.bytes.clone().ok_or(FsError::Internal)?;
        Ok(ReadData::new(bytes, offset, size))
    }

    pub(super) fn view_opendir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let v = self.views().ok_or(FsError::NoEntry)?;
        if let Some(d) = v.dir_index(ino) {
            return Ok(v.entries(d));
        }
        let nodes = lock(&v.nodes);
        let node = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        let keys = node.r.history.as_ref().ok_or(FsError::NotDir)?;
        let i = node.r.what.view();
        let mut out = vec![
            DirEntry {
                ino,
                kind: Kind::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: v.parents[i],
                kind: Kind::Directory,
                name: "..".into(),
            },
        ];
        out.extend((0..keys.len()).map(|k| DirEntry {
            ino: VIEW_BASE - 1 - (v.specs.len() + k) as u64,
            kind: Kind::File,
            name: k.to_string(),
        }));
        Ok(out)
    }

    /// The properties of the version a view node is bound to.
    pub(super) fn view_props(&self, ino: u64) -> Result<Option<Arc<SecretProps>>, FsError> {
        let v = self.views().ok_or(FsError::NoEntry)?;
        if v.dir_index(ino).is_some() {
            return Ok(None);
        }
        let nodes = lock(&v.nodes);
        let node = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        Ok(node.r.props.clone())
    }
}
