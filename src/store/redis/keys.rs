//! The one Redis key schema. Everything keyed by a user carries its virtual shard as a hash tag
//! (`{s417}`), so all keys one event touches share a cluster slot and one script can update them
//! atomically. Catalog keys share the `{catalog}` tag so a catalog write is one MULTI.

pub const CATALOG_ADVERTISERS: &str = "catalog:{catalog}:advertisers";
pub const CATALOG_CAMPAIGNS: &str = "catalog:{catalog}:campaigns";
pub const CATALOG_CREATIVES: &str = "catalog:{catalog}:creatives";
pub const CATALOG_VERSION: &str = "catalog:{catalog}:version";
/// Which record changed at which catalog version (ZSET, member `<kind>:<id>`).
pub const CATALOG_CHANGES: &str = "catalog:{catalog}:changes";
/// Node heartbeats: node id -> last refresh (ms). Budget shares divide by the live count.
pub const NODES: &str = "nodes:{catalog}";

/// What each node prices with (node id -> `<ms> <Money::fingerprint>`), compared so that a
/// node configured apart is found (see `RedisStore::compare_settings`).
pub const NODE_SETTINGS: &str = "nodes:{catalog}:settings";

/// Erasures of the last minute (ZSET, member: the user's keyed hash, score: when), which
/// every node reads to drop its recent view of the user.
pub const ERASURES: &str = "erasures:{catalog}";
/// How many rounds of reading [`ERASURES`] each node has completed (HASH, node id -> count):
/// an erasure waits for every live node to complete two after announcing it.
pub const ERASURES_WATCHED: &str = "erasures:{catalog}:watched";

/// When (the service's clock, ms) a service node last checked Redis's append-only files: one
/// check at a time across the service (see `RedisStore::rewrite_aof_if_due`).
pub const AOF_CHECKED: &str = "aof:{catalog}:checked";
/// Each Redis node's append-only file as last checked (HASH, field: the node's address, value:
/// `store::redis::files::Kept`).
pub const AOF_FILES: &str = "aof:{catalog}:files";

/// Caps, reservations, hides and sessions of one user (fields: `capping`).
pub fn user(shard: u32, user: &str) -> String {
    format!("u:{{s{shard}}}:{user}")
}

/// The user whose hash `key` is (the inverse of [`user`]).
pub fn user_of(shard: u32, key: &str) -> Option<&str> {
    key.strip_prefix(&format!("u:{{s{shard}}}:"))
}

/// Dedupe flags of one served slot (decision).
pub fn token(shard: u32, decision_id: &str) -> String {
    format!("t:{{s{shard}}}:{decision_id}")
}

/// A click-to-chat click: advertiser and campaign, whether a conversation started. Lives in
/// the clicking user's shard (the click id names it) so the click event sets it atomically.
pub fn click(shard: u32, decision_id: &str) -> String {
    format!("click:{{s{shard}}}:{decision_id}")
}

/// Service-window state of one (advertiser, user) conversation.
pub fn conversation(shard: u32, advertiser: &str, user: &str) -> String {
    format!("conv:{{s{shard}}}:{advertiser}:{user}")
}

/// The rating of one business message, kept to answer its duplicates.
pub fn message(shard: u32, advertiser: &str, message_id: &str) -> String {
    format!("msg:{{s{shard}}}:{advertiser}:{message_id}")
}

/// The advertisers' monthly message counts in the shard (volume tiers, service allowance):
/// field `<advertiser>|<line>:<country>` (or `<advertiser>|service:`).
pub fn message_counts(shard: u32, month: u32) -> String {
    format!("mcount:{{s{shard}}}:{month}")
}

/// Users an advertiser reached with business-initiated templates (zset, score: latest time).
pub fn business_initiated(shard: u32, advertiser: &str) -> String {
    format!("initiated:{{s{shard}}}:{advertiser}")
}

/// An earlier build's click-to-chat conversions of the shard on one UTC day (a list): read and
/// dropped once when their click ids move into the record (`record::conversions`).
pub fn conversion_log(shard: u32, day: u32) -> String {
    format!("cvlog:{{s{shard}}}:{day}")
}

/// The shard's outbox: one record per accepted event until the exporter has written it to the
/// system of record (then it is deleted).
pub fn ledger(shard: u32) -> String {
    format!("ledger:{{s{shard}}}")
}

/// Spend per campaign in the shard, in all (budgets read it; `statusads reconcile` checks it
/// against the record).
pub fn spend_total(shard: u32) -> String {
    format!("spend:{{s{shard}}}")
}

/// Spend per campaign in the shard on one UTC day (daily budgets).
pub fn spend_day(shard: u32, day: u32) -> String {
    format!("spend:{{s{shard}}}:{day}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part Redis Cluster hashes: the first `{...}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = key[open..].find('}').unwrap() + open;
        &key[open + 1..close]
    }

    #[test]
    fn everything_an_event_touches_shares_the_shard_tag() {
        let keys = [
            user(417, "u{ser}"),
            token(417, "abc"),
            ledger(417),
            spend_total(417),
            spend_day(417, 20261126),
            click(417, "abc"),
            conversation(417, "adv_1", "u{x}"),
            message(417, "adv_1", "m-1"),
            message_counts(417, 202611),
            business_initiated(417, "adv_1"),
            conversion_log(417, 20261126),
        ];
        for key in &keys {
            assert_eq!(hash_tag(key), "s417", "{key}");
        }
        assert_eq!(user(417, "u{ser}"), "u:{s417}:u{ser}");
        assert_eq!(user_of(417, &user(417, "u{ser}")), Some("u{ser}"));
        assert_eq!(user_of(416, &user(417, "u")), None);
        assert_eq!(spend_day(3, 20261126), "spend:{s3}:20261126");
        for key in [
            CATALOG_ADVERTISERS,
            CATALOG_CAMPAIGNS,
            CATALOG_CREATIVES,
            CATALOG_VERSION,
        ] {
            assert_eq!(hash_tag(key), "catalog");
        }
    }
}
