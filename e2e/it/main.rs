//! End-to-end scenarios driving the built `sphere-cli` binary.

// `sphere-cli gateway`: the embedded IPFS gateway as a process, with the official Kubo RPC client.
#[cfg(test)]
mod gateway_cli;
