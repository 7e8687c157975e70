//! The legacy wallet reader (`wallet.json` and the tokens directory) and its import.
