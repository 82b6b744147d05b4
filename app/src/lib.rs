//! The Gevulot node's core: the transaction model, validation, storage and the core API.
//!
//! *Architecture invariant:* this crate knows nothing of HTTP, JSON-RPC, OpenAPI or HTML; no
//! `axum`, `jsonrpsee`, `utoipa` or `leptos` appears in its dependency tree (a test checks).

pub mod acl;
pub mod auth;
pub mod collect;
pub mod crypto;
pub mod data_dir;
pub mod doctor;
pub mod download;
pub mod events;
pub mod gpu;
pub mod hash;
pub mod intake;
pub mod model;
pub mod node;
mod outage;
pub mod p2p;
pub mod peer_files;
pub mod pipeline;
pub mod placement;
pub mod scheduler;
pub mod store;
pub mod tx;
pub mod validate;
pub mod vm;
pub mod webhooks;
