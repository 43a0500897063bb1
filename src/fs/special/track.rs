//! What the refresher asks of the special namespace: the versions its
//! nodes are bound to, and failing them closed.

use std::sync::Arc;

use super::super::{lock, FsCore};
use super::What;
use crate::secret::{SecretName, SecretProps, VersionId};
use crate::vault::VaultError;

impl FsCore {
    /// Special nodes bound to a version of a secret, for the refresher.
    pub(in crate::fs) fn special_bound(&self) -> Vec<(SecretName, Arc<SecretProps>)> {
        lock(&self.special.nodes)
            .by_ino
            .values()
            .filter(|n| n.revoked.is_none())
            .filter_map(|n| {
                let key = n.what.secret_key()?;
                Some((key.name.clone(), Arc::clone(n.props.as_ref()?)))
            })
            .collect()
    }

    /// Marks the special nodes of `name` revoked and wipes derived files.
    pub(in crate::fs) fn special_revoke(&self, name: &SecretName, why: &VaultError) -> Vec<u64> {
        lock(&self.special.certs).retain(|k, _| &k.name != name);
        lock(&self.special.public_certs).remove(name);
        lock(&self.special.versions).remove(name);
        let mut nodes = lock(&self.special.nodes);
        nodes
            .by_ino
            .iter_mut()
            .filter(|(_, n)| n.what.secret_key().is_some_and(|k| &k.name == name))
            .map(|(ino, n)| {
                n.revoked = Some(why.clone());
                *ino
            })
            .collect()
    }

    /// Key versions with a live inode.
    pub(in crate::fs) fn special_key_versions(&self) -> Vec<(SecretName, VersionId)> {
        lock(&self.special.nodes)
            .by_ino
            .values()
            .filter(|n| n.revoked.is_none())
            .filter_map(|n| match &n.what {
                What::KeyFile(name, version, _) => Some((name.clone(), version.clone())),
                _ => None,
            })
            .collect()
    }

    /// Marks the inodes of key `name` revoked; returns them.
    pub(in crate::fs) fn special_revoke_key(
        &self,
        name: &SecretName,
        why: &VaultError,
    ) -> Vec<u64> {
        let mut nodes = lock(&self.special.nodes);
        nodes
            .by_ino
            .iter_mut()
            .filter(|(_, n)| matches!(&n.what, What::KeyFile(k, _, _) if k == name))
            .map(|(ino, n)| {
                n.revoked = Some(why.clone());
                *ino
            })
            .collect()
    }

    pub(in crate::fs) fn special_inodes_of(&self, name: &SecretName) -> Vec<u64> {
        lock(&self.special.nodes)
            .by_ino
            .iter()
            .filter(|(_, n)| n.what.secret_key().is_some_and(|k| &k.name == name))
            .map(|(ino, _)| *ino)
            .collect()
    }
}
