//! The embedded aggregator: the Unicity aggregator's v2 JSON-RPC methods over a real
//! radix SMT persisted in SQLite, closing rounds into blocks certified by unicity
//! certificates that a generated test trust base signs.
//!
//! * [`store`]: the SQLite file (`aggregator.db`) and the validator key file.
//! * [`core`]: request validation, the pending queue, round closing, proofs, and
//!   fault injection for tests (a lying aggregator).
//! * [`http`]: the axum router (`POST /` JSON-RPC, `GET /health`,
//!   `GET /api/v1/trustbases`) and the running-server handle.
//!
//! Duplicate handling follows the real service: `STATE_ID_EXISTS` only once a
//! record is finalized in a block; a request still pending is accepted again
//! (`SUCCESS`); at round close the first request for a key wins, an identical
//! repeat is dropped and a different value is dropped as a leaf modification.

pub mod core;
pub mod http;
pub mod store;

pub use self::core::{AggregatorConfig, Core, Fault};
pub use self::http::{AggregatorServer, ServerError};
