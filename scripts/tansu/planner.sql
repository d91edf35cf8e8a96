-- airq's own, not upstream: how PostgreSQL plans Tansu 0.6.0's queries on its database.
-- scripts/stack.sh applies it after schema.sql; a setting reaches the broker's new connections.
--
-- Tansu runs one prepared query per fetched record for its headers (header_fetch.sql in
-- tansu-storage, a join of five tables). With PostgreSQL's defaults that query went wrong in
-- two ways on a header table that is empty between uses, as on a fresh stack
-- (docs/tansu.md): a plan made while the table was empty kept scanning the whole table for
-- each record, or the query was planned anew on every call (1-2 ms of planning per record).
-- Both settings below hold for this database only, so for Tansu's queries only:
-- - plan_cache_mode: each prepared query is planned once per connection, not per call;
-- - enable_seqscan off: that one plan is the key lookups (cluster, topic, partition, then the
--   header's and the record's primary keys) whatever the table's statistics say. A table
--   with no usable index is still scanned: the setting only prices a scan out where an
--   index serves.
DO $$
BEGIN
  EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan', current_database());
  EXECUTE format('ALTER DATABASE %I SET enable_seqscan = off', current_database());
END
$$;
