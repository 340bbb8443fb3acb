//! The store's Lua scripts, loaded once and invoked by SHA.
//!
//! A call is built as one `redis::Cmd` (`EVALSHA sha numkeys keys... args...`), which keeps every
//! argument in one buffer. `redis::ScriptInvocation` allocated a vector per argument and copied
//! them all again into the command it sent: on a batch of ten events (about 200 arguments) that
//! was a fifth of the service's CPU.

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult};

pub struct LuaScript {
    code: &'static str,
    sha: String,
}

impl LuaScript {
    pub fn new(code: &'static str) -> Self {
        Self {
            code,
            sha: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// A call of this script with `keys` keys: append exactly that many keys, then the
    /// arguments.
    pub fn command(&self, keys: usize) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys);
        cmd
    }

    /// Runs `call`; a server that does not have the script yet (restarted, failed over, a new
    /// cluster node) is sent it once and asked again.
    pub async fn run<T: FromRedisValue>(
        &self,
        call: &Cmd,
        conn: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match call.query_async(conn).await {
            Err(err) if err.kind() == ErrorKind::NoScriptError => {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(self.code)
                    .exec_async(conn)
                    .await?;
                call.query_async(conn).await
            }
            result => result,
        }
    }
}

/// The scripts, each with the shared prelude where it reads or writes a user's hash.
pub struct Scripts {
    pub reserve: LuaScript,
    pub events: LuaScript,
    pub conversion: LuaScript,
    pub message: LuaScript,
    pub message_status: LuaScript,
    pub periodic: LuaScript,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            // The scripts that touch a user's hash share its decoding and cap rules.
            reserve: LuaScript::new(concat!(
                include_str!("scripts/user_state.lua"),
                include_str!("scripts/reserve.lua")
            )),
            events: LuaScript::new(concat!(
                include_str!("scripts/user_state.lua"),
                include_str!("scripts/events.lua")
            )),
            conversion: LuaScript::new(include_str!("scripts/conversion.lua")),
            // Both message scripts read the stored message and price tiers the same way.
            message: LuaScript::new(concat!(
                include_str!("scripts/messaging_shared.lua"),
                include_str!("scripts/message.lua")
            )),
            message_status: LuaScript::new(concat!(
                include_str!("scripts/messaging_shared.lua"),
                include_str!("scripts/message_status.lua")
            )),
            periodic: LuaScript::new(include_str!("scripts/periodic.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_names_the_script_by_sha1_and_counts_its_keys() {
        let script = LuaScript::new("return 1");
        let mut call = script.command(1);
        call.arg("k").arg(7);
        // SHA-1 of "return 1", as Redis computes it for SCRIPT LOAD.
        let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        assert_eq!(
            call.get_packed_command(),
            format!("*5\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\n7\r\n")
                .into_bytes()
        );
    }
}
