//! Helpers shared by the scanner tests and benchmark.

pub mod photos;
