-- The ledger: every accepted event, conversion and business message, exactly once (the id is
-- the record's stable id: `<decision>:<type>`, `msg:<advertiser>:<id>[:status]`, ...). No user
-- id: `user_key` is the deployment's keyed hash of it (reach counts distinct keys).
CREATE TABLE ledger_records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    advertiser_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    creative_id TEXT NOT NULL,
    category TEXT NOT NULL,
    country TEXT NOT NULL,
    os TEXT NOT NULL,
    age_band TEXT NOT NULL,
    user_key TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    amount_micros BIGINT NOT NULL
);
CREATE INDEX ledger_records_by_advertiser ON ledger_records (advertiser_id, at_ms);
CREATE INDEX ledger_records_by_campaign ON ledger_records (campaign_id, kind, at_ms);

-- What reports read: counters per campaign, UTC hour and coarse context, moved in the same
-- transaction as the records they count (served: by the node that served, see ledger::served).
CREATE TABLE report_counters (
    campaign_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    country TEXT NOT NULL,
    os TEXT NOT NULL,
    age_band TEXT NOT NULL,
    creative_id TEXT NOT NULL,
    served BIGINT NOT NULL DEFAULT 0,
    rendered BIGINT NOT NULL DEFAULT 0,
    viewed BIGINT NOT NULL DEFAULT 0,
    clicks BIGINT NOT NULL DEFAULT 0,
    hides BIGINT NOT NULL DEFAULT 0,
    reports BIGINT NOT NULL DEFAULT 0,
    conversations BIGINT NOT NULL DEFAULT 0,
    messages BIGINT NOT NULL DEFAULT 0,
    billed BIGINT NOT NULL DEFAULT 0,
    spend_micros BIGINT NOT NULL DEFAULT 0,
    message_charges_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour_ms, country, os, age_band, creative_id)
);

-- Keys of the deployment, created on first start: `reach` hashes user ids into user_key.
CREATE TABLE deployment_keys (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL
);
