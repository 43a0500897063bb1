//! The gRPC Identity and Node services over the plugin's unix socket.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::identity_server::{Identity, IdentityServer};
use super::proto::node_server::{Node, NodeServer};
use super::proto::node_service_capability::{rpc, Rpc, Type as NodeCapType};
use super::proto::*;
use super::registry::Registry;
use super::{request, Refusal, DRIVER_NAME};

/// The Identity service.
pub struct IdentityService;

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        // A node plugin only: no controller service, no topology.
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

/// The Node service.
pub struct NodeService {
    pub registry: Arc<Registry>,
    pub node_id: String,
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        Status::new(r.code(), r.to_string())
    }
}

/// Runs a registry call on a blocking thread (mounting waits for the vault
/// and the kernel).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Status::from),
        Err(_) => Err(Status::internal(
            "internal error while handling the request (please report this)",
        )),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let target = req.target_path.clone();
        let volume = req.volume_id.clone();
        let registry = Arc::clone(&self.registry);
        let result = blocking(move || {
            let p = request::parse(req, registry.node())?;
            registry.publish(p)
        })
        .await;
        if let Err(status) = &result {
            tracing::warn!(volume = %volume, target = %target, code = ?status.code(), "publish refused: {}", status.message());
        }
        result.map(|()| Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        if req.volume_id.is_empty() || req.target_path.is_empty() {
            return Err(Status::invalid_argument(
                "NodeUnpublishVolume needs volume_id and target_path",
            ));
        }
        let target = PathBuf::from(&req.target_path);
        let registry = Arc::clone(&self.registry);
        blocking(move || registry.unpublish(&target)).await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let cap = |t: rpc::Type| NodeServiceCapability {
            r#type: Some(NodeCapType::Rpc(Rpc { r#type: t as i32 })),
        };
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![cap(rpc::Type::VolumeMountGroup)],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
        }))
    }
}

/// The two services, ready to serve.
pub fn services(
    registry: Arc<Registry>,
    node_id: String,
) -> (IdentityServer<IdentityService>, NodeServer<NodeService>) {
    (
        IdentityServer::new(IdentityService),
        NodeServer::new(NodeService { registry, node_id }),
    )
}
