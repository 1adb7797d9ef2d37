from dagster import AssetSelection, define_asset_job, in_process_executor

from render_assets.assets import RENDER_ASSETS
from render_assets.hooks import settle_failed_render
from render_assets.partitions import render_partitions

# Steps run in the run's own process: a render is four short steps, and a process per step
# would cost more than the work.
render_job = define_asset_job(
    "render_job",
    selection=AssetSelection.assets(*RENDER_ASSETS),
    partitions_def=render_partitions,
    hooks={settle_failed_render},
    executor_def=in_process_executor,
)
