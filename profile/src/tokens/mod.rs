//! Token storage: UXF bundles referenced from the OpLog under `tokens.bundle.{CID}`.
