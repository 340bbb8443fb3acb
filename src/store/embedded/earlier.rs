//! What builds before the in-process Redis kept in an embedded data dir: journal entries per
//! operation (decisions, event batches, conversions, messages) and a snapshot of the state
//! they built, in Rust maps. Read once, at the first start of this build on such a dir:
//! replayed here exactly as those builds applied them, then written as the keyspace the Redis
//! scripts keep (see [`translate`]) and compacted into a snapshot of this build's form, after
//! which nothing reads them again. The rules here are those builds' and never change; the
//! live rules are the scripts'.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::capping::{
    self, count_since, render_stamp, window_now, within_caps, Reservation, DAY_MS, HIDE_MS,
};
use crate::clock::Millis;
use crate::domain::audience::Audience;
use crate::domain::event::EventType;
use crate::ledger::reconcile::{LedgerKind, LedgerRecord};
use crate::messaging::rules::{price_at, Schedule};
use crate::messaging::Conversation;
use crate::store::codec::{
    self, advertiser_field, campaign_field, decode_caps, decode_stamps, encode_stamps, hide_field,
    reservation_expiry, reservation_field,
};
use crate::store::{EventOutcome, StoredMessage};

const REFUSED: u32 = 32;

/// One journaled change: everything needed to apply it again.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Entry {
    Catalog {
        kind: String,
        id: String,
        json: String,
    },
    Decision {
        user: String,
        /// The session id itself, as earlier builds wrote it (this one writes `session_field`).
        session: Option<String>,
        /// The session's user-hash field: a hash of its id, which the store keeps instead of
        /// the id (entries of earlier builds have `session`).
        #[serde(default)]
        session_field: Option<String>,
        now_ms: Millis,
        day: u32,
        reservations: Vec<JournaledReservation>,
        session_after: String,
        /// How long the user's hash must live now (entries of earlier builds have none: see
        /// `State::user_to_write`).
        #[serde(default)]
        user_ttl_ms: Option<Millis>,
    },
    Events {
        now_ms: Millis,
        day: u32,
        events: Vec<JournaledEvent>,
    },
    Conversion {
        decision_id: String,
        advertiser: String,
        kind: String,
        /// The UTC day of `at_ms`: unused here, kept for earlier builds reading this journal
        /// (a rollback).
        #[serde(default)]
        day: u32,
        at_ms: Millis,
        /// Listed by the conversions API (entries of earlier builds are not).
        #[serde(default)]
        click_id: Option<String>,
        /// The user-hash field and until when a conversation suppresses the campaign.
        #[serde(default)]
        suppress: Option<(String, Millis)>,
    },
    /// A rated business message. Entries of earlier builds carry a final `result` and its
    /// `price_micros`; this build's carry the `stored` message whose charge is decided on apply
    /// (the month's count moves), exactly as `message.lua` does.
    Message {
        advertiser: String,
        user: String,
        message_id: String,
        new_state: String,
        #[serde(default)]
        result: String,
        #[serde(default)]
        category: String,
        #[serde(default)]
        country: String,
        #[serde(default)]
        price_micros: i64,
        month: u32,
        #[serde(default)]
        stored: Option<String>,
        #[serde(default)]
        deliver: bool,
        /// The template was business-initiated: its user counts towards the limit.
        #[serde(default)]
        initiated: bool,
        /// When it was written (entries of earlier builds have none: see `State::sweep`).
        #[serde(default)]
        written_ms: Option<Millis>,
    },
    MessageStatus {
        advertiser: String,
        message_id: String,
        void: bool,
    },
    /// A user's right of erasure: every record of theirs goes (see `State::erase_user`).
    EraseUser { user: String },
    /// The first line of a journal begun by compaction: the snapshot of generation
    /// `generation - 1` holds everything before it. A journal without it is generation 0.
    Generation { generation: u64 },
}

/// A reservation as journaled: `(field, value, campaign)` of the user hash (see `capping`), or
/// `(encoded, campaign)` as builds before the compact user hash wrote it, read on replay so
/// that their journals keep working.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum JournaledReservation {
    Fields(String, String, String),
    Encoded(String, String),
}

impl JournaledReservation {
    /// `(field, value, campaign)`; `None` for an earlier entry that does not parse.
    fn fields(&self) -> Option<(String, String, &str)> {
        match self {
            Self::Fields(field, value, campaign) => {
                Some((field.clone(), value.clone(), campaign.as_str()))
            }
            Self::Encoded(encoded, campaign) => {
                let mut parts = encoded.split('|');
                let reservation = Reservation {
                    decision_id: parts.next()?.to_owned(),
                    campaign: parts.next()?.to_owned(),
                    advertiser: parts.next()?.to_owned(),
                    expires_ms: parts.next()?.parse().ok()?,
                };
                Some((reservation.field(), reservation.value(), campaign.as_str()))
            }
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Click {
    advertiser: String,
    campaign: String,
    /// The clicking user (a conversation may suppress the campaign for them).
    user: String,
    conversation: bool,
    /// Like the Redis key's TTL: a click is attributable for `CLICK_TTL_MS`.
    expires_ms: Millis,
    /// `message` conversions so far (each one's record id is numbered, as in conversion.lua).
    messages: u64,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct JournaledEvent {
    kind: EventType,
    decision_id: String,
    user: String,
    campaign: String,
    advertiser: String,
    price_micros: i64,
    token_ttl_ms: Millis,
    campaign_caps: String,
    advertiser_caps: String,
    campaign_keep: (u32, Millis),
    advertiser_keep: (u32, Millis),
    daily_max: u32,
    #[serde(default)]
    audience: Audience,
    /// As `EventWrite::user_ttl_ms` (entries of earlier builds have none: derived from what
    /// they carry, as that build's Redis TTL was).
    #[serde(default)]
    user_ttl_ms: Option<Millis>,
}

impl JournaledEvent {
    fn user_ttl_ms(&self) -> Millis {
        self.user_ttl_ms.unwrap_or_else(|| {
            capping::user_ttl_ms(
                self.campaign_keep.1.max(self.advertiser_keep.1),
                self.kind.hides(),
            )
        })
    }
}

/// The hot state, also as a snapshot (see [`EmbeddedStore::compact`]).
#[derive(Default, Serialize, Deserialize)]
pub(super) struct State {
    catalog_version: u64,
    /// kind -> id -> (catalog version of its last change, JSON)
    catalog: HashMap<String, HashMap<String, (u64, String)>>,
    /// user -> fields, the same fields as the Redis user hash.
    users: HashMap<String, HashMap<String, String>>,
    /// user -> when their hash expires (ms), as the Redis key's TTL: every write extends it,
    /// never shortens it, and an expired user is a new one.
    #[serde(default)]
    user_expires: HashMap<String, Millis>,
    /// decision id -> (flags, expires_ms)
    tokens: HashMap<String, (u32, Millis)>,
    spend_total: HashMap<String, i64>,
    #[serde(with = "pairs")]
    spend_day: HashMap<(u32, String), i64>,
    clicks: HashMap<String, Click>,
    /// (advertiser, user) -> encoded conversation
    #[serde(with = "pairs")]
    conversations: HashMap<(String, String), String>,
    /// (advertiser, message id) -> stored result
    #[serde(with = "pairs")]
    messages: HashMap<(String, String), String>,
    /// (advertiser, message id) -> when it was written: it is forgotten `MESSAGE_DEDUPE_MS`
    /// after, as its Redis key expires.
    #[serde(default, with = "pairs")]
    message_written: HashMap<(String, String), Millis>,
    /// (month, `<advertiser>|<counter>`) -> messages counted (volume tiers, service allowance)
    #[serde(with = "pairs")]
    message_counts: HashMap<(u32, String), u64>,
    /// (day, `<advertiser>|<campaign>|<click id>|<type>|<at_ms>`): the conversion log of an
    /// earlier build's snapshot, until its click ids are moved into the record.
    #[serde(default)]
    conversion_log: Vec<(u32, String)>,
    /// advertiser -> user -> latest business-initiated template (ms)
    initiated: HashMap<String, HashMap<String, Millis>>,
    /// Ledger records not yet in the system of record, oldest first, each with the journal line
    /// (of this process; 0 = replayed at start, so on disk) whose entry made it: the exporter
    /// takes only records whose line is on disk.
    outbox: VecDeque<(u64, LedgerRecord)>,
    /// The line of the entry being applied (see `outbox`).
    #[serde(skip)]
    line: u64,
}

/// The expiry given to a user's hash that has none (see `State::user_to_write`).
const LEGACY_USER_TTL_MS: Millis = capping::UNEXPIRING_USER_TTL_MS;

impl State {
    /// The user's hash to write at `now`: a new one if it had expired. A hash kept without an
    /// expiry (written by a build before expiry was tracked, or by its journal entries) is
    /// given the longest rule from now: never shorter than its Redis TTL was. (Over the two
    /// maps, so that callers can hold it beside the state's other maps.)
    fn user_to_write<'a>(
        users: &'a mut HashMap<String, HashMap<String, String>>,
        expires: &mut HashMap<String, Millis>,
        user: &str,
        now: Millis,
    ) -> &'a mut HashMap<String, String> {
        match expires.get(user) {
            Some(until) if *until <= now => {
                users.remove(user);
                expires.remove(user);
            }
            None if users.contains_key(user) => {
                expires.insert(user.to_owned(), now + LEGACY_USER_TTL_MS);
            }
            _ => {}
        }
        users.entry(user.to_owned()).or_default()
    }

    /// Like `PEXPIRE` when the TTL is shorter: the hash lives at least until `until`.
    fn keep_user(&mut self, user: &str, until: Millis) {
        let expires = self.user_expires.entry(user.to_owned()).or_insert(until);
        *expires = (*expires).max(until);
    }

    /// Drops what has expired, as Redis would have: users' hashes, clicks, conversations past
    /// their relevance, business-initiated entries past the limit's window, messages past
    /// their dedupe window (from their write) and conversion-log days past their retention
    /// (from the day; Redis counts from the list's last write, days later at most). A user or
    /// message kept by a build before expiry was tracked is given its longest rule from now.
    fn sweep(&mut self, now: Millis) {
        for user in self.users.keys() {
            if !self.user_expires.contains_key(user) {
                self.user_expires
                    .insert(user.clone(), now + LEGACY_USER_TTL_MS);
            }
        }
        let expired: Vec<String> = self
            .user_expires
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(user, _)| user.clone())
            .collect();
        for user in expired {
            self.users.remove(&user);
            self.user_expires.remove(&user);
        }
        self.clicks.retain(|_, click| click.expires_ms > now);
        self.conversations.retain(|_, raw| {
            Conversation::decode(raw)
                .relevant_until_ms()
                .is_some_and(|until| until + crate::messaging::LATE_MS > now)
        });
        let horizon = now - 2 * crate::store::BUSINESS_LIMIT_WINDOW_MS;
        for users in self.initiated.values_mut() {
            users.retain(|_, at| *at > horizon);
        }
        self.initiated.retain(|_, users| !users.is_empty());
        // A message written by an earlier build, with no time kept, is given the window from
        // now.
        for key in self.messages.keys() {
            if !self.message_written.contains_key(key) {
                self.message_written.insert(key.clone(), now);
            }
        }
        let written = &mut self.message_written;
        written.retain(|_, at| *at + crate::store::MESSAGE_DEDUPE_MS > now);
        self.messages.retain(|key, _| written.contains_key(key));
        self.conversion_log
            .retain(|(day, _)| day_start_ms(*day) + DAY_MS + crate::store::CONVERSION_LOG_MS > now);
    }

    fn erase_user(&mut self, user: &str) {
        self.users.remove(user);
        self.user_expires.remove(user);
        self.clicks.retain(|_, click| click.user != user);
        self.conversations.retain(|(_, owner), _| owner != user);
        for users in self.initiated.values_mut() {
            users.remove(user);
        }
    }

    pub(super) fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Catalog { kind, id, json } => {
                self.catalog_version += 1;
                self.catalog
                    .entry(kind.clone())
                    .or_default()
                    .insert(id.clone(), (self.catalog_version, json.clone()));
            }
            Entry::Decision {
                user,
                session,
                session_field,
                now_ms,
                day: _,
                reservations,
                session_after,
                user_ttl_ms,
            } => {
                let fields =
                    Self::user_to_write(&mut self.users, &mut self.user_expires, user, *now_ms);
                let current = session_field
                    .clone()
                    .or_else(|| session.as_deref().map(codec::session_field));
                fields.retain(|field, value| match field.as_bytes().first() {
                    Some(b'r') => reservation_expiry(value).is_some_and(|e| e > *now_ms),
                    Some(b's') if current.as_ref() != Some(field) => {
                        codec::forget_after(value).is_some_and(|t| t > *now_ms)
                    }
                    _ => !codec::outlived(field, value, *now_ms),
                });
                for (field, value, _) in reservations.iter().filter_map(|r| r.fields()) {
                    fields.insert(field, value);
                }
                if let Some(field) = current {
                    fields.insert(field, session_after.clone());
                }
                if let Some(ttl) = user_ttl_ms {
                    self.keep_user(user, now_ms + ttl);
                }
            }
            Entry::Events {
                now_ms,
                day,
                events,
            } => {
                self.apply_events(*now_ms, *day, events);
            }
            Entry::Conversion {
                decision_id,
                advertiser,
                kind,
                day: _,
                at_ms,
                click_id,
                suppress,
            } => {
                let Some(click) = self.clicks.get_mut(decision_id) else {
                    return;
                };
                let (stat, record_id) = if kind == "conversation_started" {
                    click.conversation = true;
                    if let Some((field, until)) =
                        suppress.as_ref().filter(|_| !click.user.is_empty())
                    {
                        let user = click.user.clone();
                        Self::user_to_write(&mut self.users, &mut self.user_expires, &user, *at_ms)
                            .insert(field.clone(), until.to_string());
                        let expires = self.user_expires.entry(user).or_insert(*until);
                        *expires = (*expires).max(*until);
                    }
                    ("cv", format!("{decision_id}:conversation"))
                } else {
                    click.messages += 1;
                    ("m", format!("{decision_id}:message:{}", click.messages))
                };
                let kind_of = if stat == "cv" {
                    LedgerKind::Conversation
                } else {
                    LedgerKind::ConversionMessage
                };
                let record = LedgerRecord {
                    id: record_id,
                    kind: kind_of,
                    campaign: click.campaign.clone(),
                    advertiser: advertiser.clone(),
                    category: String::new(),
                    country: String::new(),
                    price_micros: 0,
                    at_ms: *at_ms,
                    creative: String::new(),
                    os: String::new(),
                    age_band: String::new(),
                    user_key: String::new(),
                    click_id: click_id.clone().unwrap_or_default(),
                };
                self.outbox.push_back((self.line, record));
            }
            Entry::Message { .. } | Entry::MessageStatus { .. } => {
                self.apply_message(entry);
            }
            Entry::EraseUser { user } => self.erase_user(user),
            Entry::Generation { .. } => {}
        }
    }

    /// Makes a stored message's charge final: moves its month's count (mirrors `charge_final`
    /// in messaging_shared.lua); the caller's ledger record bills it.
    fn charge_final(&mut self, advertiser: &str, stored: &mut StoredMessage) {
        let count = self
            .message_counts
            .entry((stored.month, format!("{advertiser}|{}", stored.counter)))
            .or_default();
        *count += 1;
        let n = *count;
        let schedule = Schedule::decode(&stored.schedule).unwrap_or(Schedule::flat(0));
        let (price, tier) = price_at(&schedule, n);
        stored.charge_micros = price;
        stored.tier = stored.tiered.then_some(tier);
        stored.billing = "final".into();
    }

    /// Applies a message or status entry; returns the stored message it leaves (`None` for
    /// entries of earlier builds).
    fn apply_message(&mut self, entry: &Entry) -> Option<StoredMessage> {
        match entry {
            Entry::Message {
                advertiser,
                user,
                message_id,
                new_state,
                result,
                category,
                country,
                price_micros,
                month,
                stored,
                deliver,
                initiated,
                written_ms,
            } => {
                let conversation = (advertiser.clone(), user.clone());
                if let Some(at) = written_ms {
                    self.message_written
                        .insert((advertiser.clone(), message_id.clone()), *at);
                }
                if new_state.is_empty() {
                    self.conversations.remove(&conversation);
                } else {
                    self.conversations.insert(conversation, new_state.clone());
                }
                let key = (advertiser.clone(), message_id.clone());
                let Some(mut stored) = stored.as_deref().and_then(StoredMessage::decode) else {
                    // An entry of an earlier build: its charge was decided when it was written.
                    self.messages.insert(key, result.clone());
                    // Its record is dated the first instant of its month, all it knows.
                    let legacy = StoredMessage {
                        line: category.clone(),
                        country: country.clone(),
                        at_ms: month_start_ms(*month),
                        ..StoredMessage::default()
                    };
                    self.message_record(
                        format!("msg:{advertiser}:{message_id}"),
                        LedgerKind::BusinessMessage,
                        advertiser,
                        &legacy,
                        *price_micros,
                    );
                    return None;
                };
                if *initiated {
                    let users = self.initiated.entry(advertiser.clone()).or_default();
                    let at = users.entry(user.clone()).or_insert(stored.at_ms);
                    *at = (*at).max(stored.at_ms);
                    // From the earlier of its date and now: a message dated ahead must not
                    // drop the users reached until then (mirrors message.lua).
                    let from = written_ms.map_or(stored.at_ms, |now| now.min(stored.at_ms));
                    let oldest = from - 2 * crate::store::BUSINESS_LIMIT_WINDOW_MS;
                    users.retain(|_, t| *t >= oldest);
                }
                if stored.counter.is_empty() {
                    stored.billing = "final".into();
                    stored.charge_micros = 0;
                    stored.tier = None;
                } else if *deliver {
                    self.charge_final(advertiser, &mut stored);
                } else {
                    let n = self
                        .message_counts
                        .get(&(stored.month, format!("{advertiser}|{}", stored.counter)))
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    let schedule = Schedule::decode(&stored.schedule).unwrap_or(Schedule::flat(0));
                    let (price, tier) = price_at(&schedule, n);
                    stored.billing = "pending".into();
                    stored.charge_micros = price;
                    stored.tier = stored.tiered.then_some(tier);
                }
                self.messages.insert(key, stored.encode());
                let billed = if stored.billing == "final" {
                    stored.charge_micros
                } else {
                    0
                };
                self.message_record(
                    format!("msg:{advertiser}:{message_id}"),
                    LedgerKind::BusinessMessage,
                    advertiser,
                    &stored,
                    billed,
                );
                Some(stored)
            }
            Entry::MessageStatus {
                advertiser,
                message_id,
                void,
            } => {
                let key = (advertiser.clone(), message_id.clone());
                let mut stored = self
                    .messages
                    .get(&key)
                    .and_then(|raw| StoredMessage::decode(raw))
                    .filter(|s| s.billing == "pending")?;
                if *void {
                    stored.billing = "void".into();
                    stored.charge_micros = 0;
                    stored.tier = None;
                } else {
                    self.charge_final(advertiser, &mut stored);
                }
                self.messages.insert(key, stored.encode());
                self.message_record(
                    format!(
                        "msg:{advertiser}:{message_id}{}",
                        crate::ledger::messages::STATUS_SUFFIX
                    ),
                    LedgerKind::MessageStatus,
                    advertiser,
                    &stored,
                    stored.charge_micros,
                );
                Some(stored)
            }
            _ => None,
        }
    }

    /// The ledger record of a rated message or of its status (mirrors message.lua and
    /// message_status.lua).
    fn message_record(
        &mut self,
        id: String,
        kind: LedgerKind,
        advertiser: &str,
        stored: &StoredMessage,
        billed: i64,
    ) {
        let record = LedgerRecord {
            id,
            kind,
            campaign: stored.campaign.clone(),
            advertiser: advertiser.to_owned(),
            category: if billed > 0 {
                stored.line.clone()
            } else {
                String::new()
            },
            country: stored.country.clone(),
            price_micros: billed,
            at_ms: stored.at_ms,
            creative: String::new(),
            os: String::new(),
            age_band: String::new(),
            user_key: String::new(),
            click_id: String::new(),
        };
        self.outbox.push_back((self.line, record));
    }

    /// Mirrors `events.lua`.
    fn apply_events(
        &mut self,
        now: Millis,
        day: u32,
        events: &[JournaledEvent],
    ) -> Vec<EventOutcome> {
        self.tokens.retain(|_, (_, expires)| *expires > now);
        events
            .iter()
            .map(|event| self.apply_event(now, day, event))
            .collect()
    }

    fn apply_event(&mut self, now: Millis, day: u32, e: &JournaledEvent) -> EventOutcome {
        let bit = e.kind.bit();
        let flags = self.tokens.get(&e.decision_id).map(|t| t.0).unwrap_or(0);
        let token_expiry = now + e.token_ttl_ms;
        if e.kind == EventType::Render && flags & REFUSED != 0 {
            return EventOutcome::CapReached;
        }
        if flags & bit != 0 {
            return EventOutcome::Duplicate;
        }
        if e.kind.needs_render() && flags & EventType::Render.bit() == 0 {
            return EventOutcome::OutOfOrder;
        }
        // Served without consent to personalisation: nothing per user (see `events.lua`).
        let personal = !e.user.is_empty();
        let mut scratch = HashMap::new();
        let fields = if personal {
            Self::user_to_write(&mut self.users, &mut self.user_expires, &e.user, now)
        } else {
            &mut scratch
        };
        let (campaign_field, advertiser_field) =
            (campaign_field(&e.campaign), advertiser_field(&e.advertiser));
        let now_floor = window_now(now);
        if !personal {
            if e.kind == EventType::Click {
                let click = self.clicks.entry(e.decision_id.clone()).or_default();
                click.advertiser.clone_from(&e.advertiser);
                click.campaign.clone_from(&e.campaign);
                click.user.clear();
                click.expires_ms = now + crate::store::CLICK_TTL_MS;
            }
        } else if e.kind == EventType::Render {
            let renders = times(fields.get(&campaign_field));
            let adv_renders = times(fields.get(&advertiser_field));
            let daily = times(fields.get("d"));
            if !allows(&renders, &e.campaign_caps, now)
                || (!e.advertiser_caps.is_empty() && !allows(&adv_renders, &e.advertiser_caps, now))
                || count_since(&daily, now_floor - DAY_MS / 1000) >= e.daily_max as usize
            {
                self.tokens
                    .insert(e.decision_id.clone(), (flags | REFUSED, token_expiry));
                return EventOutcome::CapReached;
            }
            fields.remove(&reservation_field(&e.decision_id));
            if e.campaign_keep.0 > 0 {
                fields.insert(campaign_field, append(renders, e.campaign_keep, now));
            }
            if e.advertiser_keep.0 > 0 {
                fields.insert(
                    advertiser_field,
                    append(adv_renders, e.advertiser_keep, now),
                );
            }
            fields.insert("d".into(), append(daily, (e.daily_max, DAY_MS), now));
        } else if e.kind.hides() {
            fields.insert(hide_field(&e.advertiser), (now + HIDE_MS).to_string());
        } else if e.kind == EventType::Click {
            let click = self.clicks.entry(e.decision_id.clone()).or_default();
            click.advertiser.clone_from(&e.advertiser);
            click.campaign.clone_from(&e.campaign);
            click.user.clone_from(&e.user);
            click.expires_ms = now + crate::store::CLICK_TTL_MS;
        }
        self.tokens
            .insert(e.decision_id.clone(), (flags | bit, token_expiry));
        if personal {
            if self.users.get(&e.user).is_some_and(HashMap::is_empty) {
                // Redis never creates a hash for a view or a click.
                self.users.remove(&e.user);
            } else if e.kind == EventType::Render || e.kind.hides() {
                self.keep_user(&e.user, now + e.user_ttl_ms());
            }
        }
        let billed = if e.kind == EventType::Render {
            e.price_micros.max(0)
        } else {
            0
        };
        if billed > 0 {
            *self.spend_total.entry(e.campaign.clone()).or_default() += billed;
            *self.spend_day.entry((day, e.campaign.clone())).or_default() += billed;
        }
        let record = LedgerRecord {
            id: format!("{}:{}", e.decision_id, e.kind.as_str()),
            kind: LedgerKind::Event(e.kind),
            campaign: e.campaign.clone(),
            advertiser: e.advertiser.clone(),
            category: String::new(),
            country: e.audience.coarse.country.clone(),
            price_micros: billed,
            at_ms: now,
            creative: e.audience.creative.clone(),
            os: e.audience.coarse.os.clone(),
            age_band: e.audience.coarse.age_band.clone(),
            user_key: e.audience.user_key.clone(),
            click_id: String::new(),
        };
        self.outbox.push_back((self.line, record));
        EventOutcome::Accepted
    }
}

/// Maps with tuple keys, as a list of pairs (JSON keys are strings).
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Vec::<(K, V)>::deserialize(d).map(|pairs| pairs.into_iter().collect())
    }
}

/// The first instant (ms) of a `YYYYMM` month.
fn month_start_ms(month: u32) -> Millis {
    day_start_ms(month * 100 + 1)
}

/// The first instant (ms) of a `YYYYMMDD` day (0 for a day that does not exist).
fn day_start_ms(day: u32) -> Millis {
    let date = time::Month::try_from((day / 100 % 100) as u8)
        .ok()
        .and_then(|m| {
            time::Date::from_calendar_date((day / 10_000) as i32, m, (day % 100) as u8).ok()
        });
    date.map_or(0, |d| {
        crate::clock::ms_from_datetime(d.midnight().assume_utc())
    })
}

/// Render times, whole seconds.
fn times(raw: Option<&String>) -> Vec<i64> {
    raw.map(|r| decode_stamps(r)).unwrap_or_default()
}

/// True when one more render keeps every cap encoded as `max:per_seconds,...`.
fn allows(renders: &[i64], caps: &str, now: Millis) -> bool {
    within_caps(&decode_caps(caps), renders, 0, now)
}

/// Appends a render at `now` and keeps the newest `keep_n` younger than `keep_ms` (mirrors
/// `append` in events.lua, in whole seconds).
fn append(mut list: Vec<i64>, (keep_n, keep_ms): (u32, Millis), now: Millis) -> String {
    list.push(render_stamp(now));
    let skip = list.len().saturating_sub(keep_n as usize);
    let oldest = window_now(now) - keep_ms / 1000;
    let kept: Vec<i64> = list[skip..]
        .iter()
        .copied()
        .filter(|t| *t > oldest)
        .collect();
    encode_stamps(&kept)
}

/// The keyspace the Redis scripts keep for `state` at `now`: the commands that make it, each
/// as the store's own code would have written it, on the embedded backend's one shard (its
/// earlier entries name no shard: a served slot's dedupe flags carry no user). What has
/// expired by `now` is left out; every key lives as long as the earlier build kept it.
pub(super) fn translate(mut state: State, now: Millis) -> Vec<Vec<String>> {
    use crate::store::redis::keys;
    const SHARD: u32 = 0;
    state.sweep(now);
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut push = |parts: Vec<String>| out.push(parts);
    let ttl = |until: Millis| (until - now).max(1).to_string();
    let command = |name: &str, key: &str, rest: Vec<String>| {
        let mut parts = vec![name.to_owned(), key.to_owned()];
        parts.extend(rest);
        parts
    };
    let hash = |key: &str, fields: Vec<(String, String)>| {
        command(
            "HSET",
            key,
            fields.into_iter().flat_map(|(f, v)| [f, v]).collect(),
        )
    };

    if state.catalog_version > 0 {
        push(command(
            "SET",
            keys::CATALOG_VERSION,
            vec![state.catalog_version.to_string()],
        ));
    }
    for (kind, key) in [
        ("advertiser", keys::CATALOG_ADVERTISERS),
        ("campaign", keys::CATALOG_CAMPAIGNS),
        ("creative", keys::CATALOG_CREATIVES),
    ] {
        if let Some(records) = state.catalog.get(kind).filter(|r| !r.is_empty()) {
            let fields = records
                .iter()
                .map(|(id, (_, json))| (id.clone(), json.clone()));
            push(hash(key, fields.collect()));
        }
    }
    for (user, fields) in &state.users {
        if fields.is_empty() {
            continue;
        }
        let key = keys::user(SHARD, user);
        push(hash(
            &key,
            fields.iter().map(|(f, v)| (f.clone(), v.clone())).collect(),
        ));
        let until = state
            .user_expires
            .get(user)
            .copied()
            .unwrap_or(now + LEGACY_USER_TTL_MS);
        push(command("PEXPIRE", &key, vec![ttl(until)]));
    }
    for (decision, (flags, until)) in &state.tokens {
        if *until > now {
            let key = keys::token(SHARD, decision);
            push(command(
                "SET",
                &key,
                vec![flags.to_string(), "PX".into(), ttl(*until)],
            ));
        }
    }
    let spend: Vec<_> = state
        .spend_total
        .iter()
        .map(|(c, m)| (c.clone(), m.to_string()))
        .collect();
    if !spend.is_empty() {
        push(hash(&keys::spend_total(SHARD), spend));
    }
    let mut days: HashMap<u32, Vec<(String, String)>> = HashMap::new();
    for ((day, campaign), micros) in &state.spend_day {
        days.entry(*day)
            .or_default()
            .push((campaign.clone(), micros.to_string()));
    }
    for (day, spend) in days {
        // As events.lua keeps a day's spend, which it expires three days after the day's first
        // billed write: here from the day's start (that write's time is not kept), at most a
        // day sooner; a day's spend is read only that day.
        let until = day_start_ms(day) + crate::store::SPEND_DAY_TTL_MS;
        if until > now {
            let key = keys::spend_day(SHARD, day);
            push(hash(&key, spend));
            push(command("PEXPIRE", &key, vec![ttl(until)]));
        }
    }
    for (decision, click) in &state.clicks {
        let key = keys::click(SHARD, decision);
        let mut fields = vec![
            ("adv".to_owned(), click.advertiser.clone()),
            ("cmp".to_owned(), click.campaign.clone()),
            (
                "usr".to_owned(),
                if click.user.is_empty() {
                    String::new()
                } else {
                    keys::user(SHARD, &click.user)
                },
            ),
            ("exp".to_owned(), click.expires_ms.to_string()),
        ];
        if click.conversation {
            fields.push(("conv".into(), now.to_string()));
        }
        if click.messages > 0 {
            fields.push(("msgs".into(), click.messages.to_string()));
        }
        push(hash(&key, fields));
        push(command("PEXPIRE", &key, vec![ttl(click.expires_ms)]));
    }
    for ((advertiser, user), raw) in &state.conversations {
        let until = Conversation::decode(raw)
            .relevant_until_ms()
            .map_or(now, |until| until + crate::messaging::LATE_MS);
        let key = keys::conversation(SHARD, advertiser, user);
        push(command(
            "SET",
            &key,
            vec![raw.clone(), "PX".into(), ttl(until)],
        ));
    }
    for (id, stored) in &state.messages {
        let written = state.message_written.get(id).copied().unwrap_or(now);
        let key = keys::message(SHARD, &id.0, &id.1);
        let until = written + crate::store::MESSAGE_DEDUPE_MS;
        push(command(
            "SET",
            &key,
            vec![stored.clone(), "PX".into(), ttl(until)],
        ));
    }
    let mut months: HashMap<u32, Vec<(String, String)>> = HashMap::new();
    for ((month, counter), n) in &state.message_counts {
        months
            .entry(*month)
            .or_default()
            .push((counter.clone(), n.to_string()));
    }
    for (month, counts) in months {
        push(hash(&keys::message_counts(SHARD, month), counts));
    }
    for (advertiser, users) in &state.initiated {
        let key = keys::business_initiated(SHARD, advertiser);
        let members = users
            .iter()
            .flat_map(|(user, at)| [at.to_string(), user.clone()]);
        push(command("ZADD", &key, members.collect()));
        let window = 2 * crate::store::BUSINESS_LIMIT_WINDOW_MS;
        push(command("PEXPIRE", &key, vec![window.to_string()]));
    }
    let mut logs: HashMap<u32, Vec<String>> = HashMap::new();
    for (day, entry) in &state.conversion_log {
        logs.entry(*day).or_default().push(entry.clone());
    }
    for (day, entries) in logs {
        let key = keys::conversion_log(SHARD, day);
        push(command("RPUSH", &key, entries));
        let until = day_start_ms(day) + DAY_MS + crate::store::CONVERSION_LOG_MS;
        push(command("PEXPIRE", &key, vec![ttl(until)]));
    }
    for (_, record) in &state.outbox {
        let fields = [
            ("id", record.id.clone()),
            ("type", record.kind.as_str().to_owned()),
            ("campaign", record.campaign.clone()),
            ("advertiser", record.advertiser.clone()),
            ("category", record.category.clone()),
            ("country", record.country.clone()),
            ("price", record.price_micros.to_string()),
            ("at_ms", record.at_ms.to_string()),
            ("creative", record.creative.clone()),
            ("os", record.os.clone()),
            ("age", record.age_band.clone()),
            ("uk", record.user_key.clone()),
            ("click", record.click_id.clone()),
        ];
        let mut rest = vec!["*".to_owned()];
        rest.extend(fields.into_iter().flat_map(|(f, v)| [f.to_owned(), v]));
        push(command("XADD", &keys::ledger(SHARD), rest));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::in_process::keyspace::Keyspace;
    use redis::Value;

    const T: Millis = 1_795_000_000_000;

    fn entry(json: &str) -> Entry {
        serde_json::from_str(json).unwrap()
    }

    fn decision(reservations: &str) -> Entry {
        entry(&format!(
            r#"{{"op":"decision","user":"u1","session":null,"now_ms":{T},"day":20261123,"reservations":{reservations},"session_after":"1,0,0"}}"#
        ))
    }

    /// The keyspace `state` translates into at `now`.
    fn translated(state: State, now: Millis) -> Keyspace {
        let mut keyspace = Keyspace::default();
        for command in translate(state, now) {
            let args: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
            keyspace.execute(&args, now).unwrap();
        }
        keyspace
    }

    fn run(keyspace: &mut Keyspace, now: Millis, args: &[&str]) -> Value {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        keyspace.execute(&args, now).unwrap()
    }

    #[test]
    fn messages_and_conversion_days_are_forgotten_after_their_windows() {
        use crate::store::{CONVERSION_LOG_MS, MESSAGE_DEDUPE_MS};
        let at = month_start_ms(202612) + 5 * DAY_MS;
        let mut state = State::default();
        let key = |id: &str| ("adv".to_owned(), id.to_owned());
        // Dated long before: the window runs from the write, never from the message's `at`.
        let old = StoredMessage {
            at_ms: at - 400 * DAY_MS,
            ..StoredMessage::default()
        };
        for id in ["written", "later"] {
            state.messages.insert(key(id), old.encode());
        }
        state.message_written.insert(key("written"), at);
        state.message_written.insert(key("later"), at + DAY_MS);
        state.messages.insert(key("legacy"), "accepted".into());
        state.conversion_log.push((20261206, "old".into()));
        state.conversion_log.push((20261207, "new".into()));
        assert_eq!(day_start_ms(20261206), at);

        state.sweep(at);
        assert_eq!(state.messages.len(), 3, "inside every window");
        state.sweep(at + MESSAGE_DEDUPE_MS);
        assert_eq!(
            state.messages.keys().collect::<Vec<_>>(),
            [&key("later")],
            "an earlier build's message had its window from the first sweep"
        );
        state.sweep(at + MESSAGE_DEDUPE_MS + DAY_MS);
        assert!(state.messages.is_empty() && state.message_written.is_empty());

        state.sweep(at + DAY_MS + CONVERSION_LOG_MS - 1);
        assert_eq!(
            state.conversion_log.len(),
            2,
            "the day's last instant is inside"
        );
        state.sweep(at + DAY_MS + CONVERSION_LOG_MS);
        assert_eq!(state.conversion_log, [(20261207, "new".to_owned())]);
    }

    /// Before the compact user hash, a reservation was journaled as one encoded string: it
    /// lands in the user's hash as the scripts write one.
    #[test]
    fn an_earlier_reservation_encoding_translates_into_the_user_hash() {
        let mut state = State::default();
        state.apply(&decision(
            r#"[["d1|cmp_00000000000000aa|adv_00000000000000bb|1795000900000","cmp_00000000000000aa"]]"#,
        ));
        let mut keyspace = translated(state, T);
        assert_eq!(
            run(&mut keyspace, T, &["HGET", "u:{s0}:u1", "rd1"]),
            Value::BulkString(b"00000000000000aa|00000000000000bb|1795000900000".to_vec())
        );
    }

    /// Entries of builds before expiry was tracked carry no user TTL: a hide lives its 90 days
    /// (as that build's Redis TTL did), and a hash written without one is kept for the
    /// longest rule rather than dropped.
    #[test]
    fn earlier_hides_and_hashes_without_expiry_keep_their_lifetime() {
        let mut state = State::default();
        state.apply(&decision(
            r#"[["rd9","00000000000000aa|00000000000000bb|1795000900000","cmp_00000000000000aa"]]"#,
        ));
        state.apply(&entry(&format!(
            r#"{{"op":"events","now_ms":{T},"day":20261123,"events":[{{"kind":"hide","decision_id":"d1","user":"u2","campaign":"cmp_00000000000000aa","advertiser":"adv_00000000000000bb","price_micros":0,"token_ttl_ms":3600000,"campaign_caps":"","advertiser_caps":"","campaign_keep":[0,0],"advertiser_keep":[0,0],"daily_max":10}}]}}"#
        )));
        let now = T + 5 * DAY_MS;
        let mut keyspace = translated(state, now);
        let ttl = |keyspace: &mut Keyspace, key: &str| match run(keyspace, now, &["PTTL", key]) {
            Value::Int(ms) => ms,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ttl(&mut keyspace, "u:{s0}:u2"),
            T + capping::user_ttl_ms(0, true) - now,
            "a hide's hash lives by the hide's rule from its event"
        );
        let field = hide_field("adv_00000000000000bb");
        assert_eq!(
            run(&mut keyspace, now, &["HGET", "u:{s0}:u2", &field]),
            Value::BulkString((T + HIDE_MS).to_string().into_bytes())
        );
        assert!(
            ttl(&mut keyspace, "u:{s0}:u1") >= LEGACY_USER_TTL_MS - DAY_MS,
            "a hash without an expiry is kept for the longest rule"
        );
    }
}
