//! IPFS: the verified gateway client and the embedded gateway server.
