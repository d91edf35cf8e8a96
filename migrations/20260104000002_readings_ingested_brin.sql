-- The Overview dashboard's ingest rate selects readings by time of storage; rows are stored in
-- that order, so a BRIN index (a few pages) serves it.
CREATE INDEX IF NOT EXISTS readings_ingested_brin ON readings USING brin (ingested_at);
