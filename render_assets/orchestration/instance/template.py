"""The template process's preload: import once what every run worker needs, then fork from it.

Imported only by the forkserver of `ForkingRunLauncher` (never import it elsewhere: it freezes
the garbage collector). What a fresh interpreter spends on imports per run (about 2 CPU-seconds)
is spent here once; each forked worker shares these pages copy-on-write.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import sys

# Dagster's run execution path as `dagster api execute_run` takes it, the code location, and
# what a run imports only once it runs. The list is what a forked render run still imported
# (sys.modules after the run minus before); scipy.fftpack alone, imported by imagehash's pHash
# on first use, costs about 0.7 CPU-seconds.
MODULES = (
    "dagster._cli.api",
    "dagster._core.executor.in_process",
    "dagster._core.execution.plan.active",
    "dagster._core.instance.runs.run_domain",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "dagster._core.system_config.composite_descent",
    "dagster._core.workspace.autodiscovery",
    "dagster._utils.test.definitions",
    "encodings.idna",
    "render_assets.orchestration.definitions",
    "render_assets.providers.local",
    "scipy.fftpack",
)
# Present in some deployments only (PostgreSQL storage).
OPTIONAL_MODULES = (
    "psycopg2",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "dagster_postgres",
    "render_assets.orchestration.instance.storage",
)
# The SDKs the providers and the storage import on first use (a CPU-second or two per run
# when every run imports them again), for the ones this configuration uses.
PROVIDER_MODULES = {
    "google": ("render_assets.providers.google_image", "google.cloud.aiplatform_v1", "google.protobuf.json_format"),
    "openai": ("render_assets.providers.openai_image", "openai"),
}
GCS_MODULES = ("google.cloud.storage", "google.cloud.storage.retry", "google.auth.transport.requests")


def configured_modules() -> list[str]:
    """The provider and storage SDKs the environment's configuration will use."""
    from render_assets import config
    from render_assets.providers.registry import provider_names

    names = [
        module
        for provider in provider_names(config.RENDER_PROVIDERS.value() or "")
        for module in PROVIDER_MODULES.get(provider, ())
    ]
    if config.storage_url().startswith("gs://"):
        names += GCS_MODULES
    return names


def _warm() -> None:
    for name in MODULES:
        importlib.import_module(name)
    for name in (*OPTIONAL_MODULES, *configured_modules()):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from PIL import Image

    from render_assets.orchestration.definitions import defs
    from render_assets.orchestration.jobs import render_job

    Image.init()  # registers every image plugin (PNG, JPEG, WebP) once rather than per run
    defs.get_repository_def().get_job(render_job.name)  # cached on `defs`: resolved once


try:
    _warm()
except Exception as error:
    # Not fatal: a worker imports again, and its run reports the error in its event log.
    print(f"run worker template: preloading failed ({type(error).__name__}: {error})", file=sys.stderr)

# Objects alive now live as long as the template: keep the collector off them, so that a
# collection in a worker does not touch (and so copy) every shared page.
gc.freeze()
