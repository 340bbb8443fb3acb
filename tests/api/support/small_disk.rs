//! A small real filesystem (tmpfs) that a test fills up: `ENOSPC` exactly as a full disk gives it
//! to the service. Mounting needs root (CI and this machine run tests as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::scratch::ScratchDir;

pub struct SmallDisk {
    mount_point: PathBuf,
    /// The scratch directory it was mounted on, when the disk made its own.
    _scratch: Option<ScratchDir>,
}

impl SmallDisk {
    /// A tmpfs of `bytes` in a scratch directory; panics with the reason when it cannot be
    /// mounted.
    pub fn mount(bytes: u64) -> Self {
        let scratch = ScratchDir::new("small-disk");
        let mut disk = Self::mount_over(scratch.path(), bytes);
        disk._scratch = Some(scratch);
        disk
    }

    /// A tmpfs of `bytes` mounted over `dir` (e.g. a running app's assets directory) for the
    /// disk's lifetime, unmounted on drop even when the test panics.
    pub fn mount_over(dir: &Path, bytes: u64) -> Self {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            output.status.success(),
            "mounting a tmpfs needs root (the test suite runs as root in CI): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self {
            mount_point: dir.to_path_buf(),
            _scratch: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
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
            .arg(&self.mount_point)
            .status();
    }
}
