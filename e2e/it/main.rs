//! placeholder
mod kv_cli;
