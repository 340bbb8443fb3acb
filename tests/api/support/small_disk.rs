//! A small real filesystem (tmpfs) that a test fills up: `ENOSPC` exactly as a full disk gives it
//! to the service. Mounting needs root (CI and this machine run tests as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::scratch::ScratchDir;

pub struct SmallDisk {
    dir: ScratchDir,
}

impl SmallDisk {
    /// A tmpfs of `bytes`; panics with the reason when it cannot be mounted.
    pub fn mount(bytes: u64) -> Self {
        let dir = ScratchDir::new("small-disk");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test suite runs as root in CI)"
        );
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a file until the filesystem refuses another byte.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
    }

    /// Removes what [`fill`](Self::fill) wrote.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the app under test may still hold files open as the test ends.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
