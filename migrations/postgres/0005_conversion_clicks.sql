-- Click-to-chat conversions carry the click id they were reported with: the advertiser's
-- conversions API lists them from the record (no user identifier; the click id names a slot).
-- Only conversion records have one, so the listing's index holds only them.
ALTER TABLE ledger_records ADD COLUMN click_id TEXT NOT NULL DEFAULT '';
CREATE INDEX ledger_records_conversions ON ledger_records (advertiser_id, at_ms) WHERE click_id <> '';

-- One-off moves of an earlier build's data into the record, each noted once done (by any node).
CREATE TABLE record_upgrades (
    name TEXT PRIMARY KEY,
    done_ms BIGINT NOT NULL
);
