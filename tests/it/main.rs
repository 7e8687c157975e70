//! placeholder

mod uxf_golden;
