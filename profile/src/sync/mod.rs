//! Live replication of the OpLog between a wallet's devices over libp2p (DESIGN §5).
