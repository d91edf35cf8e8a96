-- Forecasts further ahead than the next hour, with their prediction interval (issue 14).
-- A row is a forecast of `forecast_for` made `hours_ahead` hours before it, from the hour
-- `based_on_hour`; rows written before this migration are one-hour forecasts without interval.
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS hours_ahead smallint NOT NULL DEFAULT 1;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS pm2_5_lower double precision;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS pm2_5_upper double precision;
-- The first answer of a model version for a sensor, hour and horizon is kept.
ALTER TABLE forecasts DROP CONSTRAINT IF EXISTS forecasts_pkey;
ALTER TABLE forecasts ADD PRIMARY KEY (sensor_id, forecast_for, hours_ahead, model_name, model_version);

-- As before, with the horizon and the interval (new columns go last: CREATE OR REPLACE VIEW).
CREATE OR REPLACE VIEW forecast_errors AS
SELECT f.sensor_id, f.forecast_for, f.model_name, f.model_version, f.model_kind, f.made_at,
       f.pm2_5 AS forecast, a.actual, f.pm2_5 - a.actual AS error,
       f.hours_ahead, f.pm2_5_lower, f.pm2_5_upper
FROM forecasts f
LEFT JOIN LATERAL (
    SELECT avg(r.pm2_5) AS actual
    FROM readings r
    WHERE r.sensor_id = f.sensor_id AND r.ts >= f.forecast_for AND r.ts < f.forecast_for + interval '1 hour'
) a ON true;
