"""Clients of the systems around the pipeline (BullMQ on Redis, blob storage); no Dagster imports."""
