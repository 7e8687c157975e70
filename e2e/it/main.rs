//! placeholder

mod uxf_cli;
