//! Tests of the `gevulot` binary as an operator runs it: a real process, real databases.

mod arrival;
mod audit;
mod auth;
mod backup;
mod catch_up;
mod cli;
mod commands;
mod console;
mod doors;
mod drain;
mod faults;
mod files;
mod gpus;
mod hostile;
mod live;
mod monitoring;
mod network;
mod operator;
mod ops;
mod peer_files;
mod pipeline;
mod quadlet;
mod rest;
mod rpc;
mod run;
mod support;
