//! Tests of the `gevulot` binary as an operator runs it: a real process, real databases.

mod commands;
mod process;
mod run;
