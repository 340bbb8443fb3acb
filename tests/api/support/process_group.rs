//! A child process that leads its own process group, so that whatever it starts in turn
//! (chromedriver starts Chromium, which starts a dozen helpers) ends with it. On drop, also
//! while a failing test unwinds, the whole group is killed and the leader reaped.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

pub struct ProcessGroup {
    leader: Child,
}

impl ProcessGroup {
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let leader = command.process_group(0).spawn()?;
        Ok(Self { leader })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // std can signal one pid only; `kill -- -<pgid>` signals the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.leader.id())])
            .status();
        let _ = self.leader.kill();
        let _ = self.leader.wait();
    }
}
