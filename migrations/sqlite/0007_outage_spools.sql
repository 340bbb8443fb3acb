-- The nodes whose outage spool holds events Redis has not seen yet. A node registers its spool
-- here before it acknowledges the first event into it, and removes the row once a replay has
-- emptied it. Export rounds on every node keep `as_of` before the oldest `since_ms`, so no
-- report or invoice claims completeness while any node holds acknowledged events back.
CREATE TABLE outage_spools (
    node TEXT PRIMARY KEY,
    since_ms BIGINT NOT NULL
);
