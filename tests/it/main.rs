//! Cross-crate integration tests.

// IPFS client against real loopback gateways: honest, tampering, truncating, stalling, oversize.
#[cfg(test)]
mod ipfs;
