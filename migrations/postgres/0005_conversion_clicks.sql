-- Click-to-chat conversions carry the click id they were reported with: the advertiser's
-- conversions API lists them from the record (no user identifier; the click id names a slot).
-- A constant default: no rewrite of the table. The listing's index is built by the next
-- migration.
ALTER TABLE ledger_records ADD COLUMN click_id TEXT NOT NULL DEFAULT '';

-- One-off moves of an earlier build's data into the record, each noted once done (by any node).
CREATE TABLE record_upgrades (
    name TEXT PRIMARY KEY,
    done_ms BIGINT NOT NULL
);
