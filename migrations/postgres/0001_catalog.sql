-- The catalog: advertisers, campaigns and creatives as their JSON documents (the domain types'
-- serde form), each stamped with the catalog version of its last change so nodes fetch only
-- what changed since the version they hold.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

CREATE TABLE catalog_records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX catalog_records_by_version ON catalog_records (version);

-- Every change to a campaign, oldest first: who made it and each field's old and new value.
CREATE TABLE campaign_changes (
    campaign_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (campaign_id, version)
);

-- Creative asset bytes, content-addressed: every node serves every asset.
CREATE TABLE assets (
    sha256 TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);

-- Set once the catalog and assets an earlier deployment kept in its hot store (Redis, or the
-- embedded journal and data_dir/assets) have been copied here.
CREATE TABLE hot_store_migration (
    id INTEGER PRIMARY KEY,
    done_at_ms BIGINT NOT NULL
);
