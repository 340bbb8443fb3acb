-- Access and erasure find a user's records by their keyed hash (`user_key`); records without
-- one (non-personalised slots, conversions, messages) are left out of the index.
CREATE INDEX ledger_records_by_user_key ON ledger_records (user_key) WHERE user_key <> '';
