-- The bundled PostgreSQL serves two databases: renders (POSTGRES_DB, the project's) and dagster
-- (Dagster's runs, events and schedules), kept apart as deploy/dagster.production.yaml advises.
CREATE DATABASE dagster OWNER render;
