-- Every forecast predict-api served, recorded off the request path (a full queue drops a
-- record, never delays an answer): what the Model dashboard compares with what happened.
CREATE TABLE IF NOT EXISTS forecasts (
    sensor_id      text             NOT NULL,
    -- the hour forecast (start of the hour, UTC) and the last hour of data it was made from
    forecast_for   timestamptz      NOT NULL,
    based_on_hour  timestamptz      NOT NULL,
    pm2_5          double precision NOT NULL,
    model_name     text             NOT NULL,
    model_version  text             NOT NULL,
    model_kind     text             NOT NULL,
    made_at        timestamptz      NOT NULL,
    -- the first answer of a model version for a sensor and hour is kept
    PRIMARY KEY (sensor_id, forecast_for, model_name, model_version)
);
CREATE INDEX IF NOT EXISTS forecasts_for_brin ON forecasts USING brin (forecast_for);

-- A forecast next to the hour's actual mean (the training target: the hourly mean of the
-- cleaned PM2.5); `actual` is NULL until that hour has readings.
CREATE OR REPLACE VIEW forecast_errors AS
SELECT f.sensor_id, f.forecast_for, f.model_name, f.model_version, f.model_kind, f.made_at,
       f.pm2_5 AS forecast, a.actual, f.pm2_5 - a.actual AS error
FROM forecasts f
LEFT JOIN LATERAL (
    SELECT avg(r.pm2_5) AS actual
    FROM readings r
    WHERE r.sensor_id = f.sensor_id AND r.ts >= f.forecast_for AND r.ts < f.forecast_for + interval '1 hour'
) a ON true;
