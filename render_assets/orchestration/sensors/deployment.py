"""Which deployment a sensor speaks for, so deployments that share one app database (a blue/green
switch, an old daemon not yet stopped) each act on their own claims only.

A deployment is a Dagster instance: the processes that share one Dagster run storage see each
other's runs, so they are one deployment for the claims they make. Its id is RENDER_DEPLOYMENT_ID
when set (a name that survives moving the Dagster database), else the id Dagster itself keeps for
its run storage (`instance_info.run_storage_id`, created with the storage).
"""

from dagster import DagsterInstance

from render_assets import config

MAX_LENGTH = 64  # renders.claimed_by


def deployment_id(instance: DagsterInstance) -> str:
    configured = (config.RENDER_DEPLOYMENT_ID.value() or "").strip()
    if configured:
        if len(configured) > MAX_LENGTH:
            raise ValueError(f"RENDER_DEPLOYMENT_ID is {len(configured)} characters long; at most {MAX_LENGTH} fit")
        return configured
    storage = instance.run_storage
    if not hasattr(storage, "get_run_storage_id"):
        raise ValueError(
            f"the Dagster run storage ({type(storage).__name__}) keeps no id of its own: set RENDER_DEPLOYMENT_ID"
        )
    # The first call creates the id if the storage has none yet; two processes racing there may
    # both insert one, and the second call returns the row every later call agrees on.
    storage.get_run_storage_id()
    return f"dagster:{storage.get_run_storage_id()}"
