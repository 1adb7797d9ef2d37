"""The deployment files under deploy/ load with the real launcher packages and agree with each other.

Every Dagster instance file (and each launcher block deploy/dagster.production.yaml offers in
comments) is validated as Dagster validates it when an instance starts: the file against the
instance schema, then each configured class (storage, run queue, run launcher, compute logs)
against its own config schema, from dagster-docker and dagster-k8s themselves. The Docker
deployment forwards every variable the worker reads to the runs' containers, compose.yaml sets
each one, and the Helm values keep production's limits and give run pods a valid Kubernetes spec.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from kubernetes.utils import parse_quantity

from render_assets import config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
INSTANCE_FILES = sorted(path for path in DEPLOY.rglob("dagster*.yaml"))
PRODUCTION = DEPLOY / "dagster.production.yaml"
DOCKER_INSTANCE = DEPLOY / "docker" / "dagster.yaml"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
# What the deployment's environment holds (the instance files read these with `env:`).
ENVIRONMENT = {
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_PG_HOST": "dagster-db",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_PORT": "5432",
    "RENDER_WORKER_IMAGE": "render-assets:test",
    "RENDER_RUN_NETWORK": "render-assets",
}
DAGSTER_PG = {name for name in ENVIRONMENT if name.startswith("DAGSTER_PG_")}
# A 4096² render's run container at its peak (cgroup memory usage, measured with Docker).
RENDER_4K_PEAK_BYTES = 517 * 1000**2


@pytest.fixture(autouse=True)
def deployment_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


def load_instance(settings: dict[str, Any], home: Path) -> dict[str, Any]:
    """Validate instance settings as a starting Dagster instance does; returns each configured
    class's processed config by role ("run_launcher", "storage", ...)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    ref = InstanceRef.from_dir(str(home))  # the file against Dagster's instance schema
    classes = {}
    for role, data in ref._asdict().items():
        if isinstance(data, ConfigurableClassData):
            # What `rehydrate` does before constructing the class (K8sRunLauncher's constructor
            # would need a cluster): the class's own schema, from the real package.
            klass = getattr(__import__(data.module_name, fromlist=[data.class_name]), data.class_name)
            result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
            if not result.success:
                raise DagsterInvalidConfigError(f"{role}: {data.class_name}", result.errors, data.config_dict)
            classes[role] = (data.class_name, result.value)
    return classes


def commented_launchers(text: str) -> list[dict[str, Any]]:
    """The `# run_launcher:` blocks written as comments (each line `# ` plus the YAML)."""
    blocks = re.findall(r"^# run_launcher:\n(?:#  .*\n)+", text, flags=re.MULTILINE)
    return [yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))["run_launcher"] for block in blocks]


@pytest.mark.parametrize("path", INSTANCE_FILES, ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_instance_file_loads_with_the_real_packages(path: Path, tmp_path: Path) -> None:
    classes = load_instance(yaml.safe_load(path.read_text()), tmp_path)
    assert classes["run_coordinator_data"][0] in ("RenderRunCoordinator", "QueuedRunCoordinator")
    assert classes["run_launcher_data"][0] in ("ForkingRunLauncher", "DockerRunLauncher")


def test_each_launcher_production_offers_in_comments_loads(tmp_path: Path) -> None:
    production = yaml.safe_load(PRODUCTION.read_text())
    offered = commented_launchers(PRODUCTION.read_text())
    loaded = [
        load_instance({**production, "run_launcher": launcher}, tmp_path / str(index))["run_launcher_data"]
        for index, launcher in enumerate(offered)
    ]
    assert [name for name, _ in loaded] == ["K8sRunLauncher", "DockerRunLauncher"]
    k8s = loaded[0][1]
    assert k8s["job_image"] == ENVIRONMENT["RENDER_WORKER_IMAGE"]  # read from the environment
    assert parse_quantity(k8s["run_k8s_config"]["container_config"]["resources"]["requests"]["memory"]) >= (
        RENDER_4K_PEAK_BYTES
    )


def test_a_launcher_block_missing_a_required_entry_fails(tmp_path: Path) -> None:
    # The K8s block production.yaml used to offer: no instance_config_map.
    production = yaml.safe_load(PRODUCTION.read_text())
    k8s = commented_launchers(PRODUCTION.read_text())[0]
    del k8s["config"]["instance_config_map"]
    with pytest.raises(DagsterInvalidConfigError, match="instance_config_map"):
        load_instance({**production, "run_launcher": k8s}, tmp_path)


def test_docker_runs_get_every_variable_the_worker_reads() -> None:
    forwarded = yaml.safe_load(DOCKER_INSTANCE.read_text())["run_launcher"]["config"]["env_vars"]
    assert len(forwarded) == len(set(forwarded))
    assert set(forwarded) == {variable.name for variable in config.ALL} | DAGSTER_PG


def test_compose_sets_what_the_docker_launcher_needs() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    launcher = yaml.safe_load(DOCKER_INSTANCE.read_text())["run_launcher"]["config"]
    daemon = compose["services"]["daemon"]
    # A variable the launcher forwards but the daemon lacks would fail every launch.
    assert set(launcher["env_vars"]) | set(ENVIRONMENT) <= set(daemon["environment"])
    for name in ("code-server", "webserver", "migrate", "progress"):
        assert compose["services"][name]["environment"] == daemon["environment"], name
    assert "/var/run/docker.sock:/var/run/docker.sock" in daemon["volumes"]
    assert daemon["environment"]["RENDER_RUN_NETWORK"] == compose["networks"]["default"]["name"]
    named_volumes = {volume["name"] for volume in compose["volumes"].values() if volume and "name" in volume}
    assert {mount.split(":")[0] for mount in launcher["container_kwargs"]["volumes"]} <= named_volumes


def test_helm_values_keep_the_production_limits() -> None:
    production = yaml.safe_load(PRODUCTION.read_text())
    values = yaml.safe_load(HELM_VALUES.read_text())
    runs, pools = production["concurrency"]["runs"], production["concurrency"]["pools"]
    assert values["concurrency"] == {
        "enabled": True,
        "runs": {
            "maxConcurrentRuns": runs["max_concurrent_runs"],
            "tagConcurrencyLimits": runs["tag_concurrency_limits"],
        },
        "pools": {
            "defaultLimit": pools["default_limit"],
            "granularity": pools["granularity"],
            "opGranularityRunBuffer": pools["op_granularity_run_buffer"],
        },
    }
    coordinator = production["run_coordinator"]["config"]
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"] == {
        "dequeueIntervalSeconds": coordinator["dequeue_interval_seconds"],
        "dequeueUseThreads": coordinator["dequeue_use_threads"],
        "dequeueNumWorkers": coordinator["dequeue_num_workers"],
    }
    monitoring = production["run_monitoring"]
    assert values["dagsterDaemon"]["runMonitoring"] == {
        "enabled": monitoring["enabled"],
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
        "maxRuntimeSeconds": monitoring["max_runtime_seconds"],
        "pollIntervalSeconds": monitoring["poll_interval_seconds"],
        "maxResumeRunAttempts": monitoring["max_resume_run_attempts"],
    }
    assert values["dagsterDaemon"]["sensors"] == {
        "useThreads": production["sensors"]["use_threads"],
        "numWorkers": production["sensors"]["num_workers"],
    }


def test_helm_run_pods_are_a_valid_job_sized_for_a_4k_render() -> None:
    values = yaml.safe_load(HELM_VALUES.read_text())
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = launcher["runK8sConfig"]
    # The Job dagster-k8s builds for a run, from the settings the chart hands the launcher.
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image="render-assets:0.1.0",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="render-worker-instance",
            image_pull_policy=launcher["imagePullPolicy"],
            env_config_maps=[source["name"] for source in launcher["envConfigMaps"]],
            env_secrets=[source["name"] for source in launcher["envSecrets"]],
        ),
        ["dagster", "api", "execute_run"],
        "dagster-run-test",
        UserDefinedDagsterK8sConfig.from_dict(
            {"container_config": run_k8s["containerConfig"], "job_spec_config": run_k8s["jobSpecConfig"]}
        ),
    )
    resources = job.spec.template.spec.containers[0].resources
    assert parse_quantity(resources.requests["memory"]) >= RENDER_4K_PEAK_BYTES
    assert parse_quantity(resources.limits["memory"]) > parse_quantity(resources.requests["memory"])
    assert job.spec.ttl_seconds_after_finished == run_k8s["jobSpecConfig"]["ttlSecondsAfterFinished"]
    secrets = [source.secret_ref.name for source in job.spec.template.spec.containers[0].env_from if source.secret_ref]
    assert secrets == ["render-worker-secrets"]

    with pytest.raises(Exception, match="Unexpected keys"):  # a misspelt key fails, not ignored
        construct_dagster_k8s_job(
            DagsterK8sJobConfig(job_image="i", dagster_home="/h", instance_config_map="c", image_pull_policy="Always"),
            [],
            "dagster-run-test",
            UserDefinedDagsterK8sConfig.from_dict({"container_config": {"resource": {"requests": {"memory": "1Gi"}}}}),
        )


def test_helm_values_take_secrets_from_kubernetes_secrets_only() -> None:
    text = HELM_VALUES.read_text()
    values = yaml.safe_load(text)
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["global"]["postgresqlSecretName"] == "render-worker-dagster-pg"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["envSecrets"] == values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    secret_names = {variable.name for variable in config.ALL if variable.secret}
    assert not [name for name in secret_names if re.search(rf"^\s*{name}:", text, flags=re.MULTILINE)]
