-- Only conversion records have a click id, so the listing's index holds only them.
CREATE INDEX IF NOT EXISTS ledger_records_conversions ON ledger_records (advertiser_id, at_ms) WHERE click_id <> '';
