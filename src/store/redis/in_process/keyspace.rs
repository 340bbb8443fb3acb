//! The keyspace of the in-process Redis: strings, hashes, sorted sets and streams with
//! millisecond expiry, and the commands the store sends (directly or from its scripts), with
//! Redis's replies in RESP2 form. A command outside that list is refused by name, so a store
//! change that needs one more fails on this backend instead of behaving differently.
//!
//! Expiry is lazy, as Redis's is for a key that is read: an expired key (its time passed, as
//! Redis counts it) reads as absent and is dropped when touched; [`Keyspace::purge_expired`]
//! drops the rest.
//!
//! `INFO` reports no AOF: nothing here survives a stop. So the store never takes its paths for
//! Redis's files (`BGREWRITEAOF`, which is not implemented).
//!
//! Hand-written rather than a crate: the embeddable Redis imitations on crates.io run no Lua and
//! differ in exactly the details (TTL kept or cleared per command, `GT`, exclusive score bounds,
//! an emptied hash deleted) the scripts' rules rest on. The unit tests below pin those details;
//! the contract suite runs the same behaviour on this and on a real `redis-server`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::Value;

use crate::clock::Millis;

/// A refused command: Redis's error code (`ERR`, `WRONGTYPE`, ...) and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: &'static str,
    pub message: String,
}

impl CommandError {
    fn err(message: impl Into<String>) -> Self {
        Self {
            code: "ERR",
            message: message.into(),
        }
    }

    fn wrong_type() -> Self {
        Self {
            code: "WRONGTYPE",
            message: "Operation against a key holding the wrong kind of value".into(),
        }
    }

    fn not_integer() -> Self {
        Self::err("value is not an integer or out of range")
    }

    fn syntax() -> Self {
        Self::err("syntax error")
    }
}

pub type Reply = Result<Value, CommandError>;

type Bytes = Vec<u8>;

/// A score with a total order (scores are never NaN: parsing refuses it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Default, Clone)]
struct SortedSet {
    scores: HashMap<Bytes, Score>,
    ordered: BTreeSet<(Score, Bytes)>,
}

impl SortedSet {
    fn insert(&mut self, member: Bytes, score: Score) -> bool {
        let added = match self.scores.insert(member.clone(), score) {
            Some(old) => {
                self.ordered.remove(&(old, member.clone()));
                false
            }
            None => true,
        };
        self.ordered.insert((score, member));
        added
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some(score) => self.ordered.remove(&(score, member.to_vec())),
            None => false,
        }
    }

    fn in_range(&self, range: &ScoreRange) -> Vec<Bytes> {
        self.ordered
            .iter()
            .filter(|(score, _)| range.holds(score.0))
            .map(|(_, member)| member.clone())
            .collect()
    }
}

/// A stream entry's id: milliseconds and a sequence within them.
type StreamId = (u64, u64);

#[derive(Debug, Default, Clone)]
struct Stream {
    entries: BTreeMap<StreamId, Vec<(Bytes, Bytes)>>,
    last: StreamId,
}

#[derive(Debug, Clone)]
enum Data {
    Text(Bytes),
    List(Vec<Bytes>),
    Hash(HashMap<Bytes, Bytes>),
    Sorted(SortedSet),
    Stream(Stream),
}

/// The value of one type, for [`Keyspace::value`] and [`Keyspace::value_or_new`].
impl Data {
    fn text(&self) -> Option<&Bytes> {
        match self {
            Data::Text(v) => Some(v),
            _ => None,
        }
    }

    fn list(&self) -> Option<&Vec<Bytes>> {
        match self {
            Data::List(items) => Some(items),
            _ => None,
        }
    }

    fn list_mut(&mut self) -> Option<&mut Vec<Bytes>> {
        match self {
            Data::List(items) => Some(items),
            _ => None,
        }
    }

    fn hash(&self) -> Option<&HashMap<Bytes, Bytes>> {
        match self {
            Data::Hash(h) => Some(h),
            _ => None,
        }
    }

    fn hash_mut(&mut self) -> Option<&mut HashMap<Bytes, Bytes>> {
        match self {
            Data::Hash(h) => Some(h),
            _ => None,
        }
    }

    fn sorted(&self) -> Option<&SortedSet> {
        match self {
            Data::Sorted(z) => Some(z),
            _ => None,
        }
    }

    fn sorted_mut(&mut self) -> Option<&mut SortedSet> {
        match self {
            Data::Sorted(z) => Some(z),
            _ => None,
        }
    }

    fn stream(&self) -> Option<&Stream> {
        match self {
            Data::Stream(s) => Some(s),
            _ => None,
        }
    }

    fn stream_mut(&mut self) -> Option<&mut Stream> {
        match self {
            Data::Stream(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    data: Data,
    /// When the key expires (ms); `None`: never.
    expires_ms: Option<Millis>,
}

/// `min`/`max` of `ZCOUNT` and `ZREMRANGEBYSCORE`: `-inf`, `+inf`, `(x` (exclusive) or `x`.
struct ScoreRange {
    min: (f64, bool),
    max: (f64, bool),
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<Self, CommandError> {
        let bound = |raw: &[u8]| -> Result<(f64, bool), CommandError> {
            let (raw, exclusive) = match raw.strip_prefix(b"(") {
                Some(rest) => (rest, true),
                None => (raw, false),
            };
            Ok((
                score(raw).map_err(|_| CommandError::err("min or max is not a float"))?,
                exclusive,
            ))
        };
        Ok(Self {
            min: bound(min)?,
            max: bound(max)?,
        })
    }

    fn holds(&self, score: f64) -> bool {
        let above = if self.min.1 {
            score > self.min.0
        } else {
            score >= self.min.0
        };
        let below = if self.max.1 {
            score < self.max.0
        } else {
            score <= self.max.0
        };
        above && below
    }
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// An integer as Redis reads one (`string2ll`): no sign but a leading `-`, no leading zeros,
/// no `-0`.
fn integer(raw: &[u8]) -> Result<i64, CommandError> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == raw.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    canonical
        .then(|| std::str::from_utf8(raw).ok()?.parse().ok())
        .flatten()
        .ok_or_else(CommandError::not_integer)
}

fn score(raw: &[u8]) -> Result<f64, CommandError> {
    let parsed = match raw {
        b"+inf" | b"inf" => Some(f64::INFINITY),
        b"-inf" => Some(f64::NEG_INFINITY),
        _ => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<f64>().ok()),
    };
    parsed
        .filter(|s| !s.is_nan())
        .ok_or_else(|| CommandError::err("value is not a valid float"))
}

/// A score as Redis writes it in a reply: integral scores without a fraction.
fn format_score(score: f64) -> Bytes {
    if score.fract() == 0.0 && score.abs() < 1e17 {
        format!("{}", score as i64).into_bytes()
    } else {
        format!("{score}").into_bytes()
    }
}

/// The indices `start..=stop` of `ZRANGE` and `LRANGE` over `len` items, counted from the end
/// when negative; `None` when the range holds none.
fn by_rank(start: i64, stop: i64, len: usize) -> Option<std::ops::RangeInclusive<usize>> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some(start as usize..=stop as usize)
}

fn bulk(raw: impl Into<Bytes>) -> Value {
    Value::BulkString(raw.into())
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Int(n.try_into().unwrap_or(i64::MAX))
}

fn stream_id(id: StreamId) -> Bytes {
    format!("{}-{}", id.0, id.1).into_bytes()
}

/// `ms-seq` or `ms` (`-`/`+`: the ends), as XRANGE's bounds and XDEL's ids take them.
fn parse_stream_id(raw: &[u8], end: bool) -> Result<StreamId, CommandError> {
    let invalid = || CommandError::err("Invalid stream ID specified as stream command argument");
    match raw {
        b"-" => return Ok((0, 0)),
        b"+" => return Ok((u64::MAX, u64::MAX)),
        _ => {}
    }
    let raw = std::str::from_utf8(raw).map_err(|_| invalid())?;
    match raw.split_once('-') {
        Some((ms, seq)) => Ok((
            ms.parse().map_err(|_| invalid())?,
            seq.parse().map_err(|_| invalid())?,
        )),
        None => Ok((
            raw.parse().map_err(|_| invalid())?,
            if end { u64::MAX } else { 0 },
        )),
    }
}

/// What `INFO` answers: no AOF, never evicting.
const INFO: &str = "# Persistence\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\n\
                    # Memory\r\nmaxmemory_policy:noeviction\r\n";

/// The commands that change the keyspace: what a journal keeps of a command (see
/// [`Keyspace::begin`]). A command of `run` missing here would be answered and never
/// journaled: `every_command_that_changes_the_keyspace_is_recorded` runs each one.
const WRITES: [&str; 14] = [
    "SET",
    "DEL",
    "PEXPIRE",
    "PEXPIREAT",
    "HSET",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "ZADD",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "XADD",
    "XDEL",
    "RPUSH",
];

/// What a command changed, kept while recording: its writes, to journal, and how to take
/// them back if the journal cannot take them.
#[derive(Default)]
pub struct Recording {
    /// Every write that succeeded, in order: run again at the same instants on the same
    /// keyspace, they change it the same way (`now` is each line's; stream ids follow from it).
    pub writes: Vec<Vec<Bytes>>,
    undo: Vec<Undo>,
}

/// How to restore what one write changed. A hash is restored by the fields the write named and
/// a stream by its entries, not copied: the embedded backend's one shard keeps every
/// campaign's spend in one hash, and an outbox can be long while the system of record is away.
enum Undo {
    Key(Bytes, Option<Stored>),
    Fields {
        key: Bytes,
        expires_ms: Option<Millis>,
        fields: Vec<(Bytes, Option<Bytes>)>,
    },
    Appended {
        key: Bytes,
        /// The stream's last id before, `None` if the write made the stream.
        before: Option<StreamId>,
    },
    Deleted {
        key: Bytes,
        entries: Vec<(StreamId, Vec<(Bytes, Bytes)>)>,
    },
}

#[derive(Default)]
pub struct Keyspace {
    keys: HashMap<Bytes, Stored>,
    recording: Option<Recording>,
}

impl Keyspace {
    /// Records the writes of the commands from now until [`finish`](Self::finish).
    pub fn begin(&mut self) {
        self.recording = Some(Recording::default());
    }

    pub fn finish(&mut self) -> Recording {
        self.recording.take().unwrap_or_default()
    }

    /// Takes back every write of `recording`, last first.
    pub fn rollback(&mut self, recording: Recording) {
        for undo in recording.undo.into_iter().rev() {
            match undo {
                Undo::Key(key, Some(stored)) => {
                    self.keys.insert(key, stored);
                }
                Undo::Key(key, None) | Undo::Appended { key, before: None } => {
                    self.keys.remove(&key);
                }
                Undo::Fields {
                    key,
                    expires_ms,
                    fields,
                } => {
                    // The write may have emptied (so deleted) the hash: made again as it was.
                    let stored = self.keys.entry(key).or_insert_with(|| Stored {
                        data: Data::Hash(HashMap::new()),
                        expires_ms,
                    });
                    stored.expires_ms = expires_ms;
                    if let Data::Hash(hash) = &mut stored.data {
                        for (field, value) in fields {
                            match value {
                                Some(value) => hash.insert(field, value),
                                None => hash.remove(&field),
                            };
                        }
                    }
                }
                Undo::Appended {
                    key,
                    before: Some(before),
                } => {
                    if let Some(Data::Stream(stream)) = self.keys.get_mut(&key).map(|s| &mut s.data)
                    {
                        stream.entries.retain(|id, _| *id <= before);
                        stream.last = before;
                    }
                }
                Undo::Deleted { key, entries } => {
                    if let Some(Data::Stream(stream)) = self.keys.get_mut(&key).map(|s| &mut s.data)
                    {
                        stream.entries.extend(entries);
                    }
                }
            }
        }
    }

    /// The commands that make this keyspace again at `now_ms` (a snapshot): each live key's
    /// value, then its expiry. In key order, so a snapshot of one keyspace is one text.
    pub fn dump(&mut self, now_ms: Millis) -> Vec<Vec<Bytes>> {
        self.purge_expired(now_ms);
        let mut keys: Vec<&Bytes> = self.keys.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let stored = &self.keys[key];
            let command = |name: &str, rest: Vec<Bytes>| {
                let mut args = vec![name.as_bytes().to_vec(), key.clone()];
                args.extend(rest);
                args
            };
            match &stored.data {
                Data::Text(value) => out.push(command("SET", vec![value.clone()])),
                Data::List(items) => out.push(command("RPUSH", items.clone())),
                Data::Hash(hash) => {
                    let mut fields: Vec<_> = hash.iter().collect();
                    fields.sort();
                    out.push(command(
                        "HSET",
                        fields
                            .into_iter()
                            .flat_map(|(f, v)| [f.clone(), v.clone()])
                            .collect(),
                    ));
                }
                Data::Sorted(z) => out.push(command(
                    "ZADD",
                    z.ordered
                        .iter()
                        .flat_map(|(score, member)| [format_score(score.0), member.clone()])
                        .collect(),
                )),
                Data::Stream(stream) => {
                    for (id, fields) in &stream.entries {
                        let mut rest = vec![stream_id(*id)];
                        rest.extend(fields.iter().flat_map(|(f, v)| [f.clone(), v.clone()]));
                        out.push(command("XADD", rest));
                    }
                    // The last id given, past any entry left (an outbox is often empty): the
                    // ids of later `XADD *` follow from it, and `XDEL`s name those ids.
                    let top = stream.entries.keys().next_back().copied();
                    if stream.last > top.unwrap_or((0, 0)) {
                        let last = stream_id(stream.last);
                        let placeholder = vec![last.clone(), b"-".to_vec(), b"-".to_vec()];
                        out.push(command("XADD", placeholder));
                        out.push(command("XDEL", vec![last]));
                    }
                }
            }
            if let Some(at) = stored.expires_ms {
                out.push(command("PEXPIREAT", vec![at.to_string().into_bytes()]));
            }
        }
        out
    }

    /// Runs one command (`args[0]` its name) at `now_ms`, Redis's clock; recorded if it
    /// writes and a recording is on.
    pub fn execute(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let writes = args.first().is_some_and(|name| {
            WRITES
                .iter()
                .any(|w| name.eq_ignore_ascii_case(w.as_bytes()))
        });
        if !writes || self.recording.is_none() {
            return self.run(args, now_ms);
        }
        let undo = self.undo_of(args, now_ms);
        let reply = self.run(args, now_ms);
        if let Some(recording) = &mut self.recording {
            recording.undo.extend(undo);
            if reply.is_ok() {
                recording
                    .writes
                    .push(args.iter().map(|a| a.to_vec()).collect());
            }
        }
        reply
    }

    /// How to take back the write `args` is about to make.
    fn undo_of(&mut self, args: &[&[u8]], now_ms: Millis) -> Vec<Undo> {
        let name = args[0].to_ascii_uppercase();
        let keys: &[&[u8]] = match name.as_slice() {
            b"DEL" => &args[1..],
            _ => args.get(1..2).unwrap_or_default(),
        };
        keys.iter()
            .map(|key| {
                // An expired key is as good as absent: dropped first, so it is not restored.
                self.live(key, now_ms);
                let stored = self.keys.get(*key);
                let stream = match stored.map(|s| &s.data) {
                    Some(Data::Stream(stream)) => Some(stream),
                    _ => None,
                };
                if let (b"HSET" | b"HMSET" | b"HINCRBY" | b"HDEL", Some(stored)) =
                    (name.as_slice(), stored)
                {
                    if let Data::Hash(hash) = &stored.data {
                        // The fields the write names (`args` holds the name and the key first).
                        let rest = args.get(2..).unwrap_or_default();
                        let named: Vec<&[u8]> = match name.as_slice() {
                            b"HINCRBY" => rest.iter().take(1).copied().collect(),
                            b"HDEL" => rest.to_vec(),
                            _ => rest.iter().step_by(2).copied().collect(),
                        };
                        return Undo::Fields {
                            key: key.to_vec(),
                            expires_ms: stored.expires_ms,
                            fields: named
                                .into_iter()
                                .map(|f| (f.to_vec(), hash.get(f).cloned()))
                                .collect(),
                        };
                    }
                }
                match (name.as_slice(), stream) {
                    (b"XADD", Some(stream)) => Undo::Appended {
                        key: key.to_vec(),
                        before: Some(stream.last),
                    },
                    (b"XADD", None) if !self.keys.contains_key(*key) => Undo::Appended {
                        key: key.to_vec(),
                        before: None,
                    },
                    (b"XDEL", Some(stream)) => Undo::Deleted {
                        key: key.to_vec(),
                        entries: args[2..]
                            .iter()
                            .filter_map(|id| parse_stream_id(id, false).ok())
                            .filter_map(|id| stream.entries.get(&id).map(|e| (id, e.clone())))
                            .collect(),
                    },
                    _ => Undo::Key(key.to_vec(), self.keys.get(*key).cloned()),
                }
            })
            .collect()
    }

    fn run(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let (name, args) = args
            .split_first()
            .ok_or_else(|| CommandError::err("empty command"))?;
        let name = text(name).to_ascii_uppercase();
        let arity = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(CommandError::err(format!(
                    "wrong number of arguments for '{}' command",
                    name.to_ascii_lowercase()
                )))
            }
        };
        match name.as_str() {
            "PING" => Ok(Value::SimpleString("PONG".into())),
            "INFO" => Ok(bulk(INFO)),
            // Seconds and microseconds, as bulk strings.
            "TIME" => Ok(Value::Array(vec![
                bulk(now_ms.div_euclid(1000).to_string()),
                bulk((now_ms.rem_euclid(1000) * 1000).to_string()),
            ])),
            "GET" => {
                arity(args.len() == 1)?;
                Ok(self
                    .value(args[0], now_ms, Data::text)?
                    .map_or(Value::Nil, |v| bulk(v.clone())))
            }
            "SET" => {
                arity(args.len() >= 2)?;
                self.set(args, now_ms)
            }
            "DEL" => {
                arity(!args.is_empty())?;
                let mut removed = 0;
                for key in args {
                    if self.live(key, now_ms).is_some() {
                        self.keys.remove(*key);
                        removed += 1;
                    }
                }
                Ok(int(removed))
            }
            "PEXPIRE" => {
                arity(args.len() == 2)?;
                let ms = integer(args[1])?;
                if self.live(args[0], now_ms).is_none() {
                    return Ok(int(0));
                }
                if ms <= 0 {
                    self.keys.remove(args[0]);
                } else if let Some(stored) = self.keys.get_mut(args[0]) {
                    stored.expires_ms = Some(now_ms.saturating_add(ms));
                }
                Ok(int(1))
            }
            // Past instants delete the key, as on Redis.
            "PEXPIREAT" => {
                arity(args.len() == 2)?;
                let at = integer(args[1])?;
                if self.live(args[0], now_ms).is_none() {
                    return Ok(int(0));
                }
                if at < now_ms {
                    self.keys.remove(args[0]);
                } else if let Some(stored) = self.keys.get_mut(args[0]) {
                    stored.expires_ms = Some(at);
                }
                Ok(int(1))
            }
            "PTTL" => {
                arity(args.len() == 1)?;
                Ok(int(match self.live(args[0], now_ms) {
                    None => -2,
                    Some(Stored {
                        expires_ms: None, ..
                    }) => -1,
                    Some(Stored {
                        expires_ms: Some(at),
                        ..
                    }) => at - now_ms,
                }))
            }
            "HGET" => {
                arity(args.len() == 2)?;
                Ok(self
                    .hash(args[0], now_ms)?
                    .and_then(|h| h.get(args[1]).cloned())
                    .map_or(Value::Nil, bulk))
            }
            "HMGET" => {
                arity(args.len() >= 2)?;
                let hash = self.hash(args[0], now_ms)?;
                Ok(Value::Array(
                    args[1..]
                        .iter()
                        .map(|f| {
                            hash.and_then(|h| h.get(*f).cloned())
                                .map_or(Value::Nil, bulk)
                        })
                        .collect(),
                ))
            }
            "HGETALL" => {
                arity(args.len() == 1)?;
                Ok(Value::Array(
                    self.hash(args[0], now_ms)?
                        .into_iter()
                        .flatten()
                        .flat_map(|(f, v)| [bulk(f.clone()), bulk(v.clone())])
                        .collect(),
                ))
            }
            "HEXISTS" => {
                arity(args.len() == 2)?;
                Ok(int(self
                    .hash(args[0], now_ms)?
                    .is_some_and(|h| h.contains_key(args[1]))))
            }
            // `HMSET` is what the client sends for `hset_multiple`.
            "HSET" | "HMSET" => {
                arity(args.len() >= 3 && args.len() % 2 == 1)?;
                let hash = self.hash_mut(args[0], now_ms)?;
                let added = args[1..]
                    .chunks(2)
                    .filter(|pair| hash.insert(pair[0].to_vec(), pair[1].to_vec()).is_none())
                    .count();
                Ok(if name == "HSET" {
                    int(added)
                } else {
                    Value::Okay
                })
            }
            "HDEL" => {
                arity(args.len() >= 2)?;
                let removed = if self.hash(args[0], now_ms)?.is_some() {
                    let hash = self.hash_mut(args[0], now_ms)?;
                    args[1..]
                        .iter()
                        .filter(|f| hash.remove(**f).is_some())
                        .count()
                } else {
                    0
                };
                self.drop_if_empty(args[0]);
                Ok(int(removed))
            }
            "HINCRBY" => {
                arity(args.len() == 3)?;
                let by = integer(args[2])?;
                let hash = self.hash_mut(args[0], now_ms)?;
                let field = hash
                    .entry(args[1].to_vec())
                    .or_insert_with(|| b"0".to_vec());
                let now = integer(field)
                    .map_err(|_| CommandError::err("hash value is not an integer"))?
                    .checked_add(by)
                    .ok_or_else(|| CommandError::err("increment or decrement would overflow"))?;
                *field = now.to_string().into_bytes();
                Ok(int(now))
            }
            "ZADD" => {
                arity(args.len() >= 3)?;
                self.zadd(args, now_ms)
            }
            "ZSCORE" => {
                arity(args.len() == 2)?;
                Ok(self
                    .sorted(args[0], now_ms)?
                    .and_then(|z| z.scores.get(args[1]))
                    .map_or(Value::Nil, |s| bulk(format_score(s.0))))
            }
            "ZCOUNT" => {
                arity(args.len() == 3)?;
                let range = ScoreRange::parse(args[1], args[2])?;
                Ok(int(self
                    .sorted(args[0], now_ms)?
                    .map_or(0, |z| z.in_range(&range).len())))
            }
            "ZREMRANGEBYSCORE" => {
                arity(args.len() == 3)?;
                let range = ScoreRange::parse(args[1], args[2])?;
                let Some(members) = self.sorted(args[0], now_ms)?.map(|z| z.in_range(&range))
                else {
                    return Ok(int(0));
                };
                if let Some(Stored {
                    data: Data::Sorted(z),
                    ..
                }) = self.keys.get_mut(args[0])
                {
                    for member in &members {
                        z.remove(member);
                    }
                }
                self.drop_if_empty(args[0]);
                Ok(int(members.len()))
            }
            "ZREM" => {
                arity(args.len() >= 2)?;
                let mut removed = 0;
                if self.sorted(args[0], now_ms)?.is_some() {
                    if let Some(Stored {
                        data: Data::Sorted(z),
                        ..
                    }) = self.keys.get_mut(args[0])
                    {
                        removed = args[1..].iter().filter(|m| z.remove(m)).count();
                    }
                }
                self.drop_if_empty(args[0]);
                Ok(int(removed))
            }
            "ZRANGE" => {
                arity(args.len() == 3 || args.len() == 4)?;
                self.zrange(args, now_ms)
            }
            // Lists are an earlier build's conversion logs (see `keys::conversion_log`).
            "RPUSH" => {
                arity(args.len() >= 2)?;
                let items =
                    self.value_or_new(args[0], now_ms, || Data::List(Vec::new()), Data::list_mut)?;
                items.extend(args[1..].iter().map(|a| a.to_vec()));
                Ok(int(items.len()))
            }
            "LRANGE" => {
                arity(args.len() == 3)?;
                let (start, stop) = (integer(args[1])?, integer(args[2])?);
                let Some(items) = self.value(args[0], now_ms, Data::list)? else {
                    return Ok(Value::Array(Vec::new()));
                };
                let Some(range) = by_rank(start, stop, items.len()) else {
                    return Ok(Value::Array(Vec::new()));
                };
                Ok(Value::Array(
                    items[range].iter().map(|i| bulk(i.clone())).collect(),
                ))
            }
            "XADD" => {
                arity(args.len() >= 4 && args.len() % 2 == 0)?;
                self.xadd(args, now_ms)
            }
            "XRANGE" => {
                arity(args.len() == 3 || args.len() == 5)?;
                self.xrange(args, now_ms)
            }
            "XDEL" => {
                arity(args.len() >= 2)?;
                let ids = args[1..]
                    .iter()
                    .map(|id| parse_stream_id(id, false))
                    .collect::<Result<Vec<_>, _>>()?;
                let removed = match self.live_mut(args[0], now_ms) {
                    None => 0,
                    Some(Data::Stream(s)) => ids
                        .iter()
                        .filter(|id| s.entries.remove(id).is_some())
                        .count(),
                    Some(_) => return Err(CommandError::wrong_type()),
                };
                Ok(int(removed))
            }
            other => Err(CommandError::err(format!(
                "unknown command '{}' (the in-process Redis implements only what the store sends)",
                other.to_ascii_lowercase()
            ))),
        }
    }

    /// Drops every expired key.
    pub fn purge_expired(&mut self, now_ms: Millis) {
        self.keys
            .retain(|_, stored| stored.expires_ms.is_none_or(|at| at >= now_ms));
    }

    /// The key if it exists and has not expired (an expired one is dropped).
    fn live(&mut self, key: &[u8], now_ms: Millis) -> Option<&Stored> {
        if self
            .keys
            .get(key)
            .is_some_and(|s| s.expires_ms.is_some_and(|at| at < now_ms))
        {
            self.keys.remove(key);
        }
        self.keys.get(key)
    }

    fn live_mut(&mut self, key: &[u8], now_ms: Millis) -> Option<&mut Data> {
        self.live(key, now_ms)?;
        self.keys.get_mut(key).map(|s| &mut s.data)
    }

    fn hash(
        &mut self,
        key: &[u8],
        now_ms: Millis,
    ) -> Result<Option<&HashMap<Bytes, Bytes>>, CommandError> {
        self.value(key, now_ms, Data::hash)
    }

    fn hash_mut(
        &mut self,
        key: &[u8],
        now_ms: Millis,
    ) -> Result<&mut HashMap<Bytes, Bytes>, CommandError> {
        self.value_or_new(key, now_ms, || Data::Hash(HashMap::new()), Data::hash_mut)
    }

    fn sorted(&mut self, key: &[u8], now_ms: Millis) -> Result<Option<&SortedSet>, CommandError> {
        self.value(key, now_ms, Data::sorted)
    }

    /// The live key's value of the type `pick` takes: `None` when absent, `WRONGTYPE` when of
    /// another type.
    fn value<T>(
        &mut self,
        key: &[u8],
        now_ms: Millis,
        pick: fn(&Data) -> Option<&T>,
    ) -> Result<Option<&T>, CommandError> {
        match self.live(key, now_ms) {
            None => Ok(None),
            Some(stored) => pick(&stored.data)
                .map(Some)
                .ok_or_else(CommandError::wrong_type),
        }
    }

    /// The live key's value of the type `pick` takes, made (`empty`, no expiry) when absent.
    fn value_or_new<T>(
        &mut self,
        key: &[u8],
        now_ms: Millis,
        empty: fn() -> Data,
        pick: fn(&mut Data) -> Option<&mut T>,
    ) -> Result<&mut T, CommandError> {
        pick(&mut self.create(key, now_ms, empty).data).ok_or_else(CommandError::wrong_type)
    }

    /// The live key, made with `empty` (and no expiry) when absent.
    fn create(&mut self, key: &[u8], now_ms: Millis, empty: impl FnOnce() -> Data) -> &mut Stored {
        self.live(key, now_ms);
        self.keys.entry(key.to_vec()).or_insert_with(|| Stored {
            data: empty(),
            expires_ms: None,
        })
    }

    /// Redis deletes a hash or sorted set whose last member goes (and with it its TTL).
    fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.keys.get(key).map(|s| &s.data) {
            Some(Data::Hash(h)) => h.is_empty(),
            Some(Data::Sorted(z)) => z.scores.is_empty(),
            _ => false,
        };
        if empty {
            self.keys.remove(key);
        }
    }

    /// `SET key value [PX ms | KEEPTTL]`.
    fn set(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let (mut px, mut keep_ttl) = (None, false);
        let mut options = args[2..].iter();
        while let Some(option) = options.next() {
            match text(option).to_ascii_uppercase().as_str() {
                "PX" => {
                    let ms = integer(options.next().ok_or_else(CommandError::syntax)?)?;
                    if ms <= 0 {
                        return Err(CommandError::err("invalid expire time in 'set' command"));
                    }
                    px = Some(ms);
                }
                "KEEPTTL" => keep_ttl = true,
                _ => return Err(CommandError::syntax()),
            }
        }
        if px.is_some() && keep_ttl {
            return Err(CommandError::syntax());
        }
        let existing = self.live(args[0], now_ms).map(|s| s.expires_ms);
        let expires_ms = match px {
            Some(ms) => Some(now_ms.saturating_add(ms)),
            None if keep_ttl => existing.flatten(),
            None => None,
        };
        self.keys.insert(
            args[0].to_vec(),
            Stored {
                data: Data::Text(args[1].to_vec()),
                expires_ms,
            },
        );
        Ok(Value::Okay)
    }

    /// `ZADD key [GT] score member [score member ...]`.
    fn zadd(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let gt = args[1].eq_ignore_ascii_case(b"GT");
        let pairs = &args[1 + usize::from(gt)..];
        if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
            return Err(CommandError::syntax());
        }
        let parsed = pairs
            .chunks(2)
            .map(|pair| Ok((score(pair[0])?, pair[1].to_vec())))
            .collect::<Result<Vec<_>, CommandError>>()?;
        let z = self.value_or_new(
            args[0],
            now_ms,
            || Data::Sorted(SortedSet::default()),
            Data::sorted_mut,
        )?;
        let mut added = 0;
        for (score, member) in parsed {
            match z.scores.get(&member) {
                Some(old) if gt && old.0 >= score => {}
                _ => added += usize::from(z.insert(member, Score(score))),
            }
        }
        Ok(int(added))
    }

    /// `ZRANGE key start stop [WITHSCORES]`, by rank.
    fn zrange(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let with_scores = match args.get(3) {
            Some(option) if option.eq_ignore_ascii_case(b"WITHSCORES") => true,
            Some(_) => return Err(CommandError::syntax()),
            None => false,
        };
        let (start, stop) = (integer(args[1])?, integer(args[2])?);
        let Some(z) = self.sorted(args[0], now_ms)? else {
            return Ok(Value::Array(Vec::new()));
        };
        let Some(range) = by_rank(start, stop, z.ordered.len()) else {
            return Ok(Value::Array(Vec::new()));
        };
        let mut out = Vec::new();
        for (score, member) in z.ordered.iter().skip(*range.start()).take(range.count()) {
            out.push(bulk(member.clone()));
            if with_scores {
                out.push(bulk(format_score(score.0)));
            }
        }
        Ok(Value::Array(out))
    }

    /// `XADD key <* | id> field value [field value ...]`: ids from `now_ms`, never going back
    /// (an explicit id is a snapshot's).
    fn xadd(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let explicit = match args[1] {
            b"*" => None,
            id => Some(parse_stream_id(id, false)?),
        };
        let last = self
            .value(args[0], now_ms, Data::stream)?
            .map_or((0, 0), |stream| stream.last);
        let ms = u64::try_from(now_ms).unwrap_or(0);
        // Checked before the stream is made: a refused XADD leaves no key behind.
        let id =
            match explicit {
                Some(id) if id > last => id,
                None if ms > last.0 => (ms, 0),
                None => match last.1.checked_add(1) {
                    Some(seq) => (last.0, seq),
                    None => {
                        return Err(CommandError::err(
                            "The stream has exhausted the last possible ID",
                        ))
                    }
                },
                Some(_) => return Err(CommandError::err(
                    "The ID specified in XADD is equal or smaller than the target stream top item",
                )),
            };
        let stream = self.value_or_new(
            args[0],
            now_ms,
            || Data::Stream(Stream::default()),
            Data::stream_mut,
        )?;
        stream.last = id;
        let fields = args[2..]
            .chunks(2)
            .map(|pair| (pair[0].to_vec(), pair[1].to_vec()))
            .collect();
        stream.entries.insert(id, fields);
        Ok(bulk(stream_id(id)))
    }

    /// `XRANGE key start end [COUNT n]`.
    fn xrange(&mut self, args: &[&[u8]], now_ms: Millis) -> Reply {
        let (start, end) = (
            parse_stream_id(args[1], false)?,
            parse_stream_id(args[2], true)?,
        );
        let count = match args.get(3..) {
            Some([option, n]) if option.eq_ignore_ascii_case(b"COUNT") => {
                usize::try_from(integer(n)?).unwrap_or(0)
            }
            Some([]) | None => usize::MAX,
            Some(_) => return Err(CommandError::syntax()),
        };
        let Some(entries) = self.value(args[0], now_ms, Data::stream)? else {
            return Ok(Value::Array(Vec::new()));
        };
        if start > end {
            return Ok(Value::Array(Vec::new()));
        }
        Ok(Value::Array(
            entries
                .entries
                .range(start..=end)
                .take(count)
                .map(|(id, fields)| {
                    Value::Array(vec![
                        bulk(stream_id(*id)),
                        Value::Array(
                            fields
                                .iter()
                                .flat_map(|(f, v)| [bulk(f.clone()), bulk(v.clone())])
                                .collect(),
                        ),
                    ])
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ks: &mut Keyspace, now: Millis, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        ks.execute(&args, now)
    }

    #[test]
    fn expiry_follows_redis_per_command() {
        let mut ks = Keyspace::default();
        run(&mut ks, 0, &["SET", "k", "v", "PX", "100"]).unwrap();
        assert_eq!(run(&mut ks, 40, &["PTTL", "k"]), Ok(Value::Int(60)));
        run(&mut ks, 50, &["SET", "k", "w", "KEEPTTL"]).unwrap();
        assert_eq!(run(&mut ks, 50, &["PTTL", "k"]), Ok(Value::Int(50)));
        assert_eq!(
            run(&mut ks, 100, &["PTTL", "k"]),
            Ok(Value::Int(0)),
            "at its time"
        );
        assert_eq!(
            run(&mut ks, 101, &["GET", "k"]),
            Ok(Value::Nil),
            "expired after it"
        );
        assert_eq!(run(&mut ks, 101, &["PTTL", "k"]), Ok(Value::Int(-2)));
        run(&mut ks, 0, &["SET", "k", "v", "PX", "100"]).unwrap();
        run(&mut ks, 0, &["SET", "k", "v"]).unwrap();
        assert_eq!(
            run(&mut ks, 0, &["PTTL", "k"]),
            Ok(Value::Int(-1)),
            "plain SET clears"
        );

        run(&mut ks, 0, &["HSET", "h", "a", "1", "b", "2"]).unwrap();
        run(&mut ks, 0, &["PEXPIRE", "h", "1000"]).unwrap();
        run(&mut ks, 10, &["HSET", "h", "c", "3"]).unwrap();
        assert_eq!(
            run(&mut ks, 10, &["PTTL", "h"]),
            Ok(Value::Int(990)),
            "HSET keeps it"
        );
        run(&mut ks, 10, &["HDEL", "h", "a", "b", "c"]).unwrap();
        assert_eq!(
            run(&mut ks, 10, &["PTTL", "h"]),
            Ok(Value::Int(-2)),
            "an emptied hash is gone"
        );
        assert_eq!(run(&mut ks, 10, &["PEXPIRE", "h", "10"]), Ok(Value::Int(0)));
    }

    #[test]
    fn sorted_sets_take_gt_and_exclusive_bounds() {
        let mut ks = Keyspace::default();
        assert_eq!(
            run(&mut ks, 0, &["ZADD", "z", "GT", "10", "a", "20", "b"]),
            Ok(Value::Int(2))
        );
        run(&mut ks, 0, &["ZADD", "z", "GT", "5", "a"]).unwrap();
        assert_eq!(
            run(&mut ks, 0, &["ZSCORE", "z", "a"]),
            Ok(bulk("10")),
            "GT: not lowered"
        );
        run(&mut ks, 0, &["ZADD", "z", "GT", "15", "a"]).unwrap();
        assert_eq!(
            run(&mut ks, 0, &["ZCOUNT", "z", "(15", "20"]),
            Ok(Value::Int(1))
        );
        assert_eq!(
            run(&mut ks, 0, &["ZCOUNT", "z", "-inf", "+inf"]),
            Ok(Value::Int(2))
        );
        assert_eq!(
            run(&mut ks, 0, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            Ok(Value::Array(vec![
                bulk("a"),
                bulk("15"),
                bulk("b"),
                bulk("20")
            ]))
        );
        assert_eq!(
            run(&mut ks, 0, &["ZREMRANGEBYSCORE", "z", "-inf", "(20"]),
            Ok(Value::Int(1))
        );
        assert_eq!(
            run(&mut ks, 0, &["ZRANGE", "z", "0", "-10"]),
            Ok(Value::Array(Vec::new())),
            "a stop before the first member"
        );
        assert_eq!(run(&mut ks, 0, &["ZREM", "z", "b"]), Ok(Value::Int(1)));
        assert_eq!(
            run(&mut ks, 0, &["PTTL", "z"]),
            Ok(Value::Int(-2)),
            "emptied: gone"
        );
    }

    #[test]
    fn stream_ids_never_go_back_and_ranges_page() {
        let mut ks = Keyspace::default();
        let id = |r: Reply| match r.unwrap() {
            Value::BulkString(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(id(run(&mut ks, 7, &["XADD", "s", "*", "f", "1"])), "7-0");
        assert_eq!(id(run(&mut ks, 7, &["XADD", "s", "*", "f", "2"])), "7-1");
        assert_eq!(id(run(&mut ks, 5, &["XADD", "s", "*", "f", "3"])), "7-2");
        let page = run(&mut ks, 7, &["XRANGE", "s", "-", "+", "COUNT", "2"]).unwrap();
        let Value::Array(entries) = page else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(
            run(&mut ks, 7, &["XDEL", "s", "7-0", "7-9"]),
            Ok(Value::Int(1))
        );
        let Value::Array(rest) = run(&mut ks, 7, &["XRANGE", "s", "7", "7"]).unwrap() else {
            panic!()
        };
        assert_eq!(rest.len(), 2);
    }

    #[test]
    fn wrong_types_and_unknown_commands_are_refused() {
        let mut ks = Keyspace::default();
        run(&mut ks, 0, &["SET", "k", "v"]).unwrap();
        assert_eq!(
            run(&mut ks, 0, &["HSET", "k", "f", "v"]).unwrap_err().code,
            "WRONGTYPE"
        );
        run(&mut ks, 0, &["HSET", "h", "n", "x"]).unwrap();
        assert!(run(&mut ks, 0, &["HINCRBY", "h", "n", "1"]).is_err());
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "m", "-3"]),
            Ok(Value::Int(-3))
        );
        for odd in ["+5", "05", "-0", "", "1.0"] {
            assert_eq!(
                run(&mut ks, 0, &["PEXPIRE", "h", odd]),
                Err(CommandError::not_integer()),
                "{odd:?}"
            );
        }
        assert_eq!(
            run(&mut ks, 0, &["HINCRBY", "h", "m", "0"]),
            Ok(Value::Int(-3))
        );
        assert!(run(&mut ks, 0, &["FLUSHALL"])
            .unwrap_err()
            .message
            .contains("unknown command 'flushall'"));
    }

    #[test]
    fn a_recorded_command_is_taken_back_whole() {
        let mut ks = Keyspace::default();
        run(&mut ks, 0, &["HSET", "h", "a", "1"]).unwrap();
        run(&mut ks, 0, &["XADD", "s", "*", "f", "1"]).unwrap();
        let before = ks.dump(0);
        ks.begin();
        run(&mut ks, 5, &["HSET", "h", "a", "2", "b", "3"]).unwrap();
        run(&mut ks, 5, &["PEXPIRE", "h", "100"]).unwrap();
        run(&mut ks, 5, &["SET", "new", "v"]).unwrap();
        run(&mut ks, 5, &["XADD", "s", "*", "f", "2"]).unwrap();
        run(&mut ks, 5, &["XDEL", "s", "0-0"]).unwrap();
        run(&mut ks, 5, &["XADD", "fresh", "*", "f", "3"]).unwrap();
        run(&mut ks, 5, &["HDEL", "h", "a", "b"]).unwrap();
        run(&mut ks, 5, &["HINCRBY", "h", "n", "2"]).unwrap();
        assert!(run(&mut ks, 5, &["HINCRBY", "h", "a", "x"]).is_err());
        let recording = ks.finish();
        assert_eq!(recording.writes.len(), 8, "the failed write is not one");
        ks.rollback(recording);
        assert_eq!(ks.dump(0), before);
    }

    #[test]
    fn a_dump_makes_the_same_keyspace_again() {
        let mut ks = Keyspace::default();
        run(&mut ks, 0, &["HSET", "h", "a", "1", "b", "2"]).unwrap();
        run(&mut ks, 0, &["PEXPIRE", "h", "1000"]).unwrap();
        run(&mut ks, 0, &["SET", "k", "v", "PX", "50"]).unwrap();
        run(&mut ks, 0, &["ZADD", "z", "1.5", "m", "2", "n"]).unwrap();
        run(&mut ks, 0, &["RPUSH", "l", "x", "y"]).unwrap();
        for _ in 0..3 {
            run(&mut ks, 7, &["XADD", "s", "*", "f", "v"]).unwrap();
        }
        run(&mut ks, 7, &["XDEL", "s", "7-0"]).unwrap();
        let dump = ks.dump(10);
        let mut again = Keyspace::default();
        for command in &dump {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            again.execute(&args, 10).unwrap();
        }
        assert_eq!(again.dump(10), dump);
        assert_eq!(run(&mut again, 10, &["PTTL", "h"]), Ok(Value::Int(990)));
        assert_eq!(
            run(&mut again, 10, &["XADD", "s", "*", "f", "v"]),
            Ok(bulk("10-0"))
        );
        assert_eq!(run(&mut again, 10, &["PTTL", "k"]), Ok(Value::Int(40)));

        // An emptied stream keeps its last id: later ids follow it, not the clock alone.
        for _ in 0..3 {
            run(&mut ks, 12, &["XADD", "out", "*", "f", "v"]).unwrap();
        }
        run(&mut ks, 12, &["XDEL", "out", "12-0", "12-1", "12-2"]).unwrap();
        let mut again = Keyspace::default();
        for command in &ks.dump(12) {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            again.execute(&args, 12).unwrap();
        }
        assert_eq!(
            run(&mut again, 12, &["XADD", "out", "*", "f", "v"]),
            Ok(bulk("12-3"))
        );
        let Ok(Value::Array(left)) = run(&mut again, 12, &["XRANGE", "out", "-", "+"]) else {
            panic!("a stream")
        };
        assert_eq!(left.len(), 1, "the placeholder that kept the id is gone");
    }

    /// Every command `run` answers (read from its match arms, so a new one cannot be left
    /// out), on a keyspace holding every type: one that changes the keyspace is recorded.
    #[test]
    fn every_command_that_changes_the_keyspace_is_recorded() {
        let source = include_str!("keyspace.rs");
        let body = &source[source.find("    fn run(").unwrap()..];
        let body = &body[..body.find("\n    }\n").unwrap()];
        let mut arms: Vec<&str> = body
            .lines()
            .filter(|line| line.starts_with("            \"") && line.contains("=>"))
            .flat_map(|line| line.split("=>").next().unwrap().split('|'))
            .map(|name| name.trim().trim_matches('"'))
            .collect();
        arms.sort();
        let calls: &[&[&str]] = &[
            &["PING"],
            &["INFO"],
            &["TIME"],
            &["GET", "s"],
            &["SET", "s", "w"],
            &["DEL", "s"],
            &["PEXPIRE", "h", "500"],
            &["PEXPIREAT", "h", "900"],
            &["PTTL", "h"],
            &["HGET", "h", "a"],
            &["HMGET", "h", "a", "b"],
            &["HGETALL", "h"],
            &["HEXISTS", "h", "a"],
            &["HSET", "h", "b", "2"],
            &["HMSET", "h", "c", "3"],
            &["HDEL", "h", "a"],
            &["HINCRBY", "h", "n", "1"],
            &["ZADD", "z", "2", "n"],
            &["ZSCORE", "z", "m"],
            &["ZCOUNT", "z", "-inf", "+inf"],
            &["ZREMRANGEBYSCORE", "z", "-inf", "(2"],
            &["ZREM", "z", "m"],
            &["ZRANGE", "z", "0", "-1"],
            &["RPUSH", "l", "y"],
            &["LRANGE", "l", "0", "-1"],
            &["XADD", "x", "*", "f", "v"],
            &["XRANGE", "x", "-", "+"],
            &["XDEL", "x", "1-0"],
        ];
        let mut named: Vec<&str> = calls.iter().map(|call| call[0]).collect();
        named.sort();
        assert_eq!(named, arms, "every command of `run` is called here");
        for call in calls {
            let mut ks = Keyspace::default();
            for setup in [
                &["SET", "s", "v"][..],
                &["HSET", "h", "a", "1"],
                &["ZADD", "z", "1", "m"],
                &["RPUSH", "l", "x"],
                &["XADD", "x", "1-0", "f", "v"],
            ] {
                run(&mut ks, 1, setup).unwrap();
            }
            let before = ks.dump(1);
            ks.begin();
            run(&mut ks, 1, call).unwrap();
            let recording = ks.finish();
            let changed = ks.dump(1) != before;
            assert_eq!(
                !recording.writes.is_empty(),
                changed,
                "{call:?}: recorded as a write exactly when it changed the keyspace"
            );
        }
    }
}
