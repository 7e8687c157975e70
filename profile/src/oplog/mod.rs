//! The encrypted Merkle-CRDT OpLog on SQLite (DESIGN §4): signed, content-addressed
//! entries and the materialized last-writer-wins state.
