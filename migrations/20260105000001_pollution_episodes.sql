-- Pollution episodes (issue 11): the air is bad and the network sees it. Never a sensor fault:
-- the anomalies table holds those. Written by anomaly-detector, one row per episode id: inserted
-- when it opens, updated once when it closes; a redelivered open state never reopens a closed one.
CREATE TABLE IF NOT EXISTS pollution_episodes (
    id             text             PRIMARY KEY,
    status         text             NOT NULL CHECK (status IN ('open', 'closed')),
    start_ts       timestamptz      NOT NULL,
    end_ts         timestamptz      NOT NULL,
    peak_aqi       smallint         NOT NULL,
    peak_category  text             NOT NULL,
    peak_share     double precision NOT NULL,
    sensors        text[]           NOT NULL,
    centroid_lat   double precision NOT NULL,
    centroid_lon   double precision NOT NULL,
    radius_km      double precision NOT NULL,
    explanation    text             NOT NULL,
    detected_at    timestamptz      NOT NULL DEFAULT now(),
    updated_at     timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pollution_episodes_start ON pollution_episodes (start_ts);
