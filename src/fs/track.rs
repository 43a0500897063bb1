//! Extended attributes of bound inodes, and what the refresher asks of the
//! inodes: which are bound to a secret, marking them revoked.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

use super::{lock, special, view, xattr, FsCore, ROOT_INO};
use crate::error::FsError;
use crate::secret::{SecretName, SecretProps};
use crate::vault::VaultError;

impl FsCore {
    /// Extended attribute names of `ino`, NUL-terminated and concatenated.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        if ino == ROOT_INO {
            return Ok(xattr::join(&xattr::root_names()));
        }
        if special::is_special(ino) {
            return self.special_listxattr(ino);
        }
        if view::is_view(ino) {
            let names = self.view_props(ino)?.map(|p| xattr::names(&p));
            return Ok(xattr::join(&names.unwrap_or_default()));
        }
        let props = self.props(ino)?;
        Ok(xattr::join(&xattr::names(&props)))
    }

    /// The value of one extended attribute.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let name = name.to_str().ok_or(FsError::NoAttr)?;
        if ino == ROOT_INO {
            return xattr::root_value(&self.vault_url, name).ok_or(FsError::NoAttr);
        }
        if special::is_special(ino) {
            return self.special_getxattr(ino, name);
        }
        if view::is_view(ino) {
            let props = self.view_props(ino)?.ok_or(FsError::NoAttr)?;
            return xattr::value(&props, name).ok_or(FsError::NoAttr);
        }
        let props = self.props(ino)?;
        xattr::value(&props, name).ok_or(FsError::NoAttr)
    }

    fn props(&self, ino: u64) -> Result<Arc<SecretProps>, FsError> {
        let inodes = lock(&self.inodes);
        Ok(Arc::clone(
            &inodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?.props,
        ))
    }

    pub(super) fn revoked(&self, ino: u64) -> Option<VaultError> {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .and_then(|n| n.revoked.clone())
    }

    /// Marks every inode bound to any version of `name` as revoked, so that
    /// a descriptor opened on an older version cannot fetch that version
    /// again once the kernel drops its pages; returns those inodes.
    pub fn revoke_inodes(&self, name: &SecretName, why: &VaultError) -> Vec<u64> {
        let mut revoked = self.special_revoke(name, why);
        revoked.extend(self.view_revoke(name, why, false));
        let mut inodes = lock(&self.inodes);
        revoked.extend(
            inodes
                .by_ino
                .iter_mut()
                .filter(|(_, n)| &n.key.name == name)
                .map(|(ino, n)| {
                    n.revoked = Some(why.clone());
                    *ino
                }),
        );
        revoked
    }

    /// Names with an inode the kernel may still cache pages of, with the
    /// properties of each bound version (whether or not the value is still
    /// in the value cache).
    pub fn bound_names(&self) -> HashMap<SecretName, Vec<Arc<SecretProps>>> {
        let inodes = lock(&self.inodes);
        let mut out: HashMap<SecretName, Vec<Arc<SecretProps>>> = HashMap::new();
        for n in inodes.by_ino.values().filter(|n| n.revoked.is_none()) {
            out.entry(n.key.name.clone())
                .or_default()
                .push(Arc::clone(&n.props));
        }
        drop(inodes);
        for (name, props) in self.special_bound().into_iter().chain(self.view_bound()) {
            out.entry(name).or_default().push(props);
        }
        out
    }

    /// Every inode bound to a version of `name`.
    pub fn inodes_of(&self, name: &SecretName) -> Vec<u64> {
        let mut out = self.special_inodes_of(name);
        out.extend(self.view_inodes_of(name));
        let inodes = lock(&self.inodes);
        out.extend(
            inodes
                .by_ino
                .iter()
                .filter(|(_, n)| &n.key.name == name)
                .map(|(ino, _)| *ino),
        );
        out
    }
}
