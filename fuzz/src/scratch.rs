//! Scratch files for parsers that only read paths (key files, journals, images, settings).
//!
//! Every file lives in one directory per process: `$KEYFILL_FUZZ_SCRATCH` when set
//! (`scripts/fuzz` points it at a fresh directory on tmpfs and removes it afterwards), else a
//! directory under the system temporary directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn directory() -> &'static Path {
    static DIRECTORY: OnceLock<PathBuf> = OnceLock::new();
    DIRECTORY.get_or_init(|| {
        let base = std::env::var_os("KEYFILL_FUZZ_SCRATCH").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let directory = base.join(format!("keyfill-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("the scratch directory can be created");
        directory
    })
}

/// Writes `contents` to the scratch file `name` (replacing it) and returns its path.
pub fn scratch_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = directory().join(name);
    std::fs::write(&path, contents).expect("the scratch file can be written");
    path
}

/// A scratch path that does not exist (removed if a previous input created it).
pub fn scratch_path(name: &str) -> PathBuf {
    let path = directory().join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// An empty scratch directory `name` (emptied if a previous input filled it).
pub fn scratch_directory(name: &str) -> PathBuf {
    let path = directory().join(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("the scratch directory can be created");
    path
}
