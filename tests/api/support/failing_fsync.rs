//! A disk whose syncs fail on demand, for the real binary: `failing_fsync.c`, built here with
//! the machine's C compiler and loaded with `LD_PRELOAD`, makes `fsync` or `fdatasync` (or both)
//! of the files a test names fail with `EIO` while a flag file exists. Nothing else on a test
//! machine makes a real filesystem fail a sync (a full tmpfs fails writes, not syncs). The
//! service appends with `fdatasync` (`File::sync_data`) and cuts a file back with `fsync`
//! (`File::sync_all`), so failing one or both reaches each branch of a failed append.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::scratch::ScratchDir;

pub struct FailingFsync {
    dir: ScratchDir,
}

impl FailingFsync {
    /// Builds the library; panics with the compiler's message if it cannot.
    pub fn build() -> Self {
        let dir = ScratchDir::new("failing-fsync");
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/support/failing_fsync.c");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(dir.path().join("failing_fsync.so"))
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("a C compiler (cc)");
        assert!(
            out.status.success(),
            "building {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    /// The environment that makes `calls` ("fsync", "fdatasync" or "fsync,fdatasync") of files
    /// whose path contains `path` fail while [`fail`](Self::fail) is on.
    pub fn env(&self, path: &str, calls: &str) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.library().display().to_string()),
            ("FAILING_FSYNC_FLAG", self.flag().display().to_string()),
            ("FAILING_FSYNC_PATH", path.to_owned()),
            ("FAILING_FSYNC_CALLS", calls.to_owned()),
        ]
    }

    /// From now on, syncs of the named files fail.
    pub fn fail(&self) {
        std::fs::write(self.flag(), b"").unwrap();
    }

    /// From now on, syncs succeed again.
    pub fn heal(&self) {
        std::fs::remove_file(self.flag()).unwrap();
    }

    fn library(&self) -> PathBuf {
        self.dir.path().join("failing_fsync.so")
    }

    fn flag(&self) -> PathBuf {
        self.dir.path().join("failing")
    }
}
