//! The apps' own warnings in a failing test's output: a test writer captured per test (libtest
//! shows it only when the test fails), so an assertion that export or Redis fell behind comes
//! with the service's account of why. `STATUSADS_LOG` sets the filter (default `warn`).

use std::sync::Once;

pub fn capture() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("STATUSADS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // Another subscriber already installed (none in this crate) keeps its place.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}
