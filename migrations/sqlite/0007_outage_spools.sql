-- The nodes whose outage spool holds events Redis has not seen yet. A node lists its spool
-- here before it acknowledges the first event into it, and removes the row once a replay has
-- emptied it. No export round on any node moves `as_of` while a row is listed, so no report
-- or invoice claims completeness while any node holds acknowledged events back. `token` names
-- one listing: a removal names the listing it removes, so one answered late cannot remove a
-- later listing of the same node.
CREATE TABLE outage_spools (
    node TEXT PRIMARY KEY,
    since_ms BIGINT NOT NULL,
    token TEXT NOT NULL
);
