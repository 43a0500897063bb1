//! The CSI v1 messages and the Identity and Node services, generated at build
//! time from proto/csi.proto.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("csi.v1");

impl std::fmt::Debug for NodePublishVolumeRequest {
    /// Names and the target only: the secrets and the volume context (where
    /// kubelet may put the pod's token) are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePublishVolumeRequest")
            .field("volume_id", &self.volume_id)
            .field("target_path", &self.target_path)
            .field("readonly", &self.readonly)
            .finish_non_exhaustive()
    }
}
