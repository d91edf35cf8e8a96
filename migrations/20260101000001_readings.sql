-- Cleaned readings, one row per (sensor_id, ts). Written by stream-cleaner (schema v1).
CREATE TABLE IF NOT EXISTS readings (
    sensor_id      text             NOT NULL,
    ts             timestamptz      NOT NULL,
    lat            double precision NOT NULL,
    lon            double precision NOT NULL,
    -- cleaned values, ug/m3: NULL when missing or invalidated
    pm2_5          double precision,
    pm10           double precision,
    no2            double precision,
    -- values as received
    pm2_5_raw      double precision,
    pm10_raw       double precision,
    no2_raw        double precision,
    -- bitmask of quality flags, see table quality_flags
    flags          integer          NOT NULL DEFAULT 0,
    pm2_5_1h       double precision,
    pm10_1h        double precision,
    no2_1h         double precision,
    nowcast_pm2_5  double precision,
    nowcast_pm10   double precision,
    aqi            smallint,
    aqi_category   text,
    aqi_dominant   text,
    eaqi_band      text,
    schema_version smallint         NOT NULL,
    ingested_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, ts)
);
-- Dashboards and extracts scan by time; BRIN stays tiny and cheap to maintain on append.
CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts);

CREATE TABLE IF NOT EXISTS quality_flags (
    bit  integer PRIMARY KEY,
    name text    NOT NULL UNIQUE
);
INSERT INTO quality_flags (bit, name) VALUES
    (1, 'negative'), (2, 'out_of_range'), (4, 'pm25_above_pm10'), (8, 'flatline'),
    (16, 'spike'), (32, 'duplicate'), (64, 'late'), (128, 'missing')
ON CONFLICT DO NOTHING;

-- Readings with their flag names, for people and dashboards.
CREATE OR REPLACE VIEW readings_flagged AS
SELECT r.*,
       ARRAY(SELECT q.name FROM quality_flags q WHERE r.flags & q.bit <> 0 ORDER BY q.bit) AS flag_names
FROM readings r;

-- Daily batch: per sensor and UTC day, recomputed idempotently by `stream-cleaner daily`.
CREATE TABLE IF NOT EXISTS daily_sensor_stats (
    sensor_id      text             NOT NULL,
    day            date             NOT NULL,
    n_readings     integer          NOT NULL,
    n_flagged      integer          NOT NULL,
    hours_covered  integer          NOT NULL,
    completeness   double precision NOT NULL,
    pm2_5_mean     double precision,
    pm10_mean      double precision,
    no2_mean       double precision,
    pm2_5_max      double precision,
    pm10_max       double precision,
    no2_max        double precision,
    aqi_max        smallint,
    computed_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, day)
);
