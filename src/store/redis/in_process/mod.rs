//! A Redis inside the process: the commands the store sends, over memory, and its Lua scripts
//! run by the same Lua 5.1 that Redis embeds (`mlua`, vendored). [`RedisStore`](super::RedisStore)
//! talks to it through the connection type it uses for a real server, so every rule of the
//! store, in Rust or in Lua, is the one code that production runs: the contract suite runs on
//! it as a third backend.
//!
//! It keeps nothing across a stop and has no AOF (its `INFO` says so, which the service warns
//! about at start): it is for tests and development. Its TTLs run on the service's clock, as
//! the scripts' `now` does, so a test's clock moves both.
//!
//! ## Layout
//!
//! - [`keyspace`]: the data and the plain commands, on a clock passed in.
//! - [`scripting`]: `SCRIPT LOAD`, `EVAL` and `EVALSHA`, with `redis.call` reaching the
//!   keyspace, under Redis's conversion rules between replies and Lua values.
//! - this module: one engine behind one lock (a script runs alone, as on Redis), serving
//!   `redis::aio::ConnectionLike` for single commands and pipelines.

mod keyspace;
mod scripting;

use std::sync::Arc;

use parking_lot::Mutex;
use redis::{ErrorKind, RedisError, RedisResult, Value};

use self::keyspace::{CommandError, Keyspace};
use self::scripting::Scripting;
use crate::clock::{Millis, SharedClock};

/// The `redis_url` that selects it (see `RedisStore::connect`).
pub const URL: &str = "in-process://";

struct Engine {
    keyspace: Keyspace,
    scripting: Scripting,
}

/// The shared engine; cloned into each connection the store holds.
#[derive(Clone)]
pub struct InProcessRedis {
    engine: Arc<Mutex<Engine>>,
    clock: SharedClock,
}

impl InProcessRedis {
    /// An empty keyspace whose TTLs run on `clock`.
    pub fn new(clock: SharedClock) -> Result<Self, mlua::Error> {
        Ok(Self {
            engine: Arc::new(Mutex::new(Engine {
                keyspace: Keyspace::default(),
                scripting: Scripting::new()?,
            })),
            clock,
        })
    }

    /// Drops every expired key (lazy expiry drops the ones read).
    pub fn purge_expired(&self) {
        let now_ms = self.clock.now_ms();
        self.engine.lock().keyspace.purge_expired(now_ms);
    }
}

impl Engine {
    fn execute(&mut self, args: &[&[u8]], now_ms: Millis) -> RedisResult<Value> {
        let name = args
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_slice() {
            b"EVAL" | b"EVALSHA" | b"SCRIPT" => {
                self.scripting.execute(&mut self.keyspace, args, now_ms)
            }
            _ => self.keyspace.execute(args, now_ms),
        };
        reply.map_err(refusal)
    }

    fn execute_cmd(&mut self, cmd: &redis::Cmd, now_ms: Millis) -> RedisResult<Value> {
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(raw) => raw,
                redis::Arg::Cursor => b"0".as_slice(),
            })
            .collect();
        self.execute(&args, now_ms)
    }
}

/// A refused command as the client reports Redis's error reply (`NOSCRIPT` is what
/// `LuaScript::run` answers by loading the script). The client keeps the code of a server's
/// other errors (`WRONGTYPE`) in a form only it can make: here they are `ERR`, which the store
/// classifies alike (as broken, not away; this Redis is never away and never out of memory).
fn refusal(error: CommandError) -> RedisError {
    let kind = match error.code {
        "NOSCRIPT" => ErrorKind::NoScriptError,
        _ => ErrorKind::ResponseError,
    };
    RedisError::from((kind, error.code, error.message))
}

impl redis::aio::ConnectionLike for InProcessRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        let now_ms = self.clock.now_ms();
        let reply = self.engine.lock().execute_cmd(cmd, now_ms);
        Box::pin(std::future::ready(reply))
    }

    /// Every command of the pipeline in order under one lock, as Redis runs them; the first
    /// refusal fails the call, as the client reports it, after the rest have run. The store
    /// sends no `MULTI` (the client asks for replies past the first, `offset`, only then).
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        if offset != 0 {
            let refused =
                RedisError::from((ErrorKind::ClientError, "the in-process Redis runs no MULTI"));
            return Box::pin(std::future::ready(Err(refused)));
        }
        let now_ms = self.clock.now_ms();
        let mut engine = self.engine.lock();
        let mut replies = Vec::new();
        let mut refused = None;
        for cmd in pipeline.cmd_iter() {
            match engine.execute_cmd(cmd, now_ms) {
                Ok(value) => replies.push(value),
                Err(err) => {
                    refused.get_or_insert(err);
                    replies.push(Value::Nil);
                }
            }
        }
        let answered = match refused {
            Some(err) => Err(err),
            None => Ok(replies.into_iter().take(count).collect()),
        };
        Box::pin(std::future::ready(answered))
    }

    fn get_db(&self) -> i64 {
        0
    }
}
