from dagster import AssetSelection, define_asset_job, in_process_executor

from render_assets.orchestration.assets import RENDER_ASSETS
from render_assets.orchestration.partitions import render_partitions

# Steps run in the run's own process: a render is four short steps, and a process per step
# would cost more than the work. The failure hook sits on the assets themselves, so Dagster's
# asset job (backfills, "Materialize") is settled like this one.
render_job = define_asset_job(
    "render_job",
    selection=AssetSelection.assets(*RENDER_ASSETS),
    partitions_def=render_partitions,
    executor_def=in_process_executor,
)
