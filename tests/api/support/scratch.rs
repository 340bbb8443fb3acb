//! A temporary directory removed on drop (`tempfile`), named after what it holds so that a
//! directory left by a killed run says which test made it.

use std::path::Path;

pub struct ScratchDir(tempfile::TempDir);

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("statusads-{label}-"))
                .tempdir()
                .expect("a temporary directory"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}
