//! The CSI v1 messages and the Identity and Node services, generated at build
//! time from proto/csi.proto.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("csi.v1");
