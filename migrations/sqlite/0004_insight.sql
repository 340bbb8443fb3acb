-- Advertiser insight, from a sample of decisions (`insight.sample_rate`). No user id anywhere.
-- Per campaign, UTC hour and outcome (`won`, `lost.<reason>`, `not_eligible.<reason>`): how many
-- sampled decisions ended that way for it. Campaign '' holds every sampled decision (outcome
-- `decision`): a campaign's targeting misses are what its other outcomes leave of it.
CREATE TABLE delivery_counters (
    campaign_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    decisions BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hour_ms, outcome)
);
-- What winners paid (CPM micros, to 0.01 per 1,000) in sampled decisions a campaign lost by bid.
CREATE TABLE delivery_prices (
    campaign_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    cpm_micros BIGINT NOT NULL,
    decisions BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hour_ms, cpm_micros)
);
-- The sampled requests a forecast replays, kept for its basis period: the request's contextual
-- and (with consent) personal signals as JSON, and the user's keyed hash where caps need one
-- ('' without consent: each such request counts as a user of its own).
CREATE TABLE sampled_requests (
    id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    user_key TEXT NOT NULL,
    request TEXT NOT NULL
);
CREATE INDEX sampled_requests_by_time ON sampled_requests (at_ms);
CREATE INDEX sampled_requests_by_user_key ON sampled_requests (user_key) WHERE user_key <> '';
