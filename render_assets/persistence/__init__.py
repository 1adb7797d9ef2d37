"""The render worker's own records in SQL (SQLAlchemy): renders and their versions, the credit
ledger, reviews, failures, hashes, timings and the webhook outbox. Plain Python, no Dagster."""
