-- Access and erasure find a user's records by their keyed hash (`user_key`); the exporter
-- clears keyed hashes past their retention by time. Records without one (non-personalised
-- slots, conversions, messages, and every record once its hash is cleared) are in neither
-- index, so both stay as small as the retention window.
CREATE INDEX ledger_records_by_user_key ON ledger_records (user_key) WHERE user_key <> '';
CREATE INDEX ledger_records_keyed_by_time ON ledger_records (at_ms) WHERE user_key <> '';
