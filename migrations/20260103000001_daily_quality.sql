-- Daily data-quality summary: per sensor of the fleet (every sensor with readings in the
-- 7 days up to the day's end, so a silent sensor shows with coverage 0) and UTC day.
-- Recomputed idempotently by `stream-cleaner daily` (the airq_daily DAG's batch step).
CREATE TABLE IF NOT EXISTS daily_quality (
    sensor_id      text             NOT NULL,
    day            date             NOT NULL,
    n_readings     integer          NOT NULL,
    hours_covered  integer          NOT NULL,
    -- hours with at least one reading / 24
    coverage       double precision NOT NULL,
    -- readings with any flag other than `missing`
    n_flagged      integer          NOT NULL,
    -- readings per flag name (quality_flags), only the flags seen that day
    flag_counts    jsonb            NOT NULL,
    -- anomaly episodes that started that day, and those of severity critical
    n_anomalies    integer          NOT NULL,
    n_critical     integer          NOT NULL,
    computed_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, day)
);
