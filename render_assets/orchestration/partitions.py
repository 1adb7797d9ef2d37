from dagster import DynamicPartitionsDefinition

# One partition per render, keyed by renderId; the queue sensor adds them as it claims jobs.
render_partitions = DynamicPartitionsDefinition(name="render_jobs")
