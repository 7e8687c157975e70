//! placeholder
mod oplog;
