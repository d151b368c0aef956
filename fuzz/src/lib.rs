//! What the fuzz targets share: a cursor that turns the fuzzer's bytes into values and
//! operations ([`Input`]), the fixed test keys of the repository's vectors ([`vectors`]), an
//! in-memory keystore ([`MemoryKeystore`]) and scratch files for parsers that read a path
//! ([`scratch_file`]).
//!
//! The input layouts here are deliberately simple (little-endian integers, `u16`-length-prefixed
//! chunks) so that `fuzz/make-seeds` can write valid seeds for the structure-aware targets
//! without Rust.

pub mod input;
pub mod keystore;
pub mod scratch;
pub mod vectors;

pub use input::Input;
pub use keystore::MemoryKeystore;
pub use scratch::{scratch_directory, scratch_file, scratch_path};

/// Runs a future that never waits (the journal's `async` accessors only lock a mutex) to its
/// end, without an executor.
pub fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the future was expected to finish without waiting"),
    }
}
