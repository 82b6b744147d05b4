//! Integration tests of the core: one test binary (one link) with a module per area.

mod acl;
mod audit;
mod boot;
mod catch_up;
mod collect;
mod download;
mod executor;
mod fuzz;
mod group_commit;
mod guest_protocol;
mod hostile_peer;
mod node_state;
mod p2p;
mod parsers;
mod pipeline_rules;
mod placed;
mod placement;
mod props;
mod schema;
mod storage;
mod support;
mod unknown_outcome;
mod vectors;
mod vm;
mod webhooks;
