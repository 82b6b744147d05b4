//! The node's own API contract, shared by the node (`server`) and its clients (`gevulot-cli`, the
//! tests): the wire types of the REST API and the new JSON-RPC methods (`dto`), the error
//! catalogue (`error`), and the `gevulot_*` JSON-RPC methods declared once as a jsonrpsee trait
//! (`rpc`). The original node's JSON-RPC methods and transaction forms are not here: they are the
//! compatibility contract and live with the transaction model in `app::tx`.

pub mod dto;
pub mod error;
pub mod rpc;

pub use error::{BadRequest, ErrorCode};
