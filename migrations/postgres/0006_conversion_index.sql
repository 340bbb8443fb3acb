-- no-transaction
-- Built without blocking the ledger's writes (a large ledger takes a while). Only conversion
-- records have a click id, so the listing's index holds only them.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_records_conversions ON ledger_records (advertiser_id, at_ms) WHERE click_id <> '';
