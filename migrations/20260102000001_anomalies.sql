-- Anomaly episodes, one row per id (schema v1, docs/schemas.md). Written by anomaly-detector:
-- an open episode is inserted, then updated once when it closes; a redelivered event never
-- reopens a closed one.
CREATE TABLE IF NOT EXISTS anomalies (
    id             text             PRIMARY KEY,
    sensor_id      text             NOT NULL,
    pollutant      text,
    kind           text             NOT NULL,
    detector       text             NOT NULL,
    status         text             NOT NULL CHECK (status IN ('open', 'closed')),
    start_ts       timestamptz      NOT NULL,
    end_ts         timestamptz      NOT NULL,
    points         integer          NOT NULL,
    score          double precision NOT NULL,
    severity       text             NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    observed       double precision,
    expected       double precision,
    explanation    text             NOT NULL,
    schema_version smallint         NOT NULL,
    detected_at    timestamptz      NOT NULL DEFAULT now(),
    updated_at     timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS anomalies_sensor_start ON anomalies (sensor_id, start_ts);
CREATE INDEX IF NOT EXISTS anomalies_start_brin ON anomalies USING brin (start_ts);
