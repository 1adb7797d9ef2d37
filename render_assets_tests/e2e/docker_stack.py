"""The Docker deployment (deploy/docker) on this machine, for end-to-end tests: the image `make image`
builds, its code server, daemon and webserver in containers on the host's network (where Redis,
PostgreSQL and the GCS emulator are), Dagster's storage in a PostgreSQL database of its own, and a
container per run, started by the daemon through DockerRunLauncher.

The containers read deploy/docker/dagster.yaml with three test changes: runs also get
STORAGE_EMULATOR_HOST, their containers carry a label naming the stack (to find and remove them)
and a compute-log volume of the stack's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from sqlalchemy.engine import make_url

from render_assets_tests.e2e.conftest import PROJECT_ROOT, RenderStack, build_stack

IMAGE = "render-assets:test"
DOCKER_INSTANCE = PROJECT_ROOT / "deploy" / "docker" / "dagster.yaml"
CONTAINER_HOME = "/opt/dagster/dagster_home"
DOCKER_SOCKET = "/var/run/docker.sock"
LABEL = "render-assets-e2e"
STOP_TIMEOUT_S = 20


def docker(*args: str, timeout_s: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


class ImageBuild:
    """`make image` for this checkout, in the background: started as soon as the session knows a
    Docker test will run, so the minutes of a cold build overlap the tests that come before it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._started = 0.0

    def start(self) -> None:
        if self._process is not None:
            return
        # A file, not a pipe nobody reads while it builds; it lives as long as the session.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            ["make", "--no-print-directory", "image", f"IMAGE={IMAGE}"],
            cwd=PROJECT_ROOT,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def wait(self) -> float:
        """Wait for the build (starting it if need be); returns the seconds it took."""
        self.start()
        assert self._process is not None and self._output is not None
        returncode = self._process.wait(timeout=1800)
        took = time.monotonic() - self._started
        if returncode != 0:
            self._output.seek(0)
            raise RuntimeError(f"make image failed ({returncode}):\n{self._output.read().decode(errors='replace')}")
        return took


IMAGE_BUILD = ImageBuild()


def build_image() -> float:
    """The image, built (cached layers make a rebuild short); returns the seconds the build took."""
    return IMAGE_BUILD.wait()


@dataclass
class DockerStack(RenderStack):
    stack_id: str = ""
    code_server_port: int = 0
    webserver_port: int = 0
    env_file: Path = Path()
    container_instance: Path = Path()
    services: list[str] = field(default_factory=list)  # containers besides the daemon's
    # Docker's events of this stack's run containers, read as they happen (dockerd keeps only its
    # last 256 events for a later `docker events --since`, and health checks fill them fast).
    container_events: list[dict[str, Any]] = field(default_factory=list)
    _event_stream: subprocess.Popen[str] | None = None

    def container(self, role: str) -> str:
        return f"render-e2e-{self.stack_id}-{role}"

    @property
    def compute_logs_volume(self) -> str:
        return f"render-e2e-{self.stack_id}-compute-logs"

    def _run_options(self) -> list[str]:
        return [
            "--network=host",
            "--init",
            f"--env-file={self.env_file}",
            f"--volume={self.container_instance}:{CONTAINER_HOME}/dagster.yaml:ro",
            # The image's health check, probed often enough for a test to wait on it.
            "--health-interval=2s",
            "--health-start-period=180s",
        ]

    def start(self) -> float:
        try:
            return super().start()
        except BaseException:  # pytest.fail included: containers outlive the test otherwise
            self.stop()
            raise

    def launch_daemon(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        self._watch_run_containers()
        grpc = ["--grpc-host", "127.0.0.1", "--grpc-port", str(self.code_server_port)]
        self._start_service(
            "code-server",
            "dagster", "code-server", "start", "--host", "127.0.0.1", "--port", str(self.code_server_port),
            "--module-name", "render_assets.orchestration.definitions", "--location-name", "render_assets",
            "--container-image", IMAGE,
        )  # fmt: skip
        self._start_service(
            "webserver", "dagster-webserver", "--host", "127.0.0.1", "--port", str(self.webserver_port), *grpc
        )
        self._wait_healthy_service("code-server")  # as compose starts the daemon: code server healthy first
        # Attached (its output is the daemon's log); it reaches Docker through the socket's group.
        return subprocess.Popen(
            [
                "docker", "run", "--rm", f"--name={self.container('daemon')}", *self._run_options(),
                f"--volume={DOCKER_SOCKET}:{DOCKER_SOCKET}", f"--group-add={os.stat(DOCKER_SOCKET).st_gid}",
                IMAGE, "dagster-daemon", "run", *grpc,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def _start_service(self, role: str, *command: str) -> None:
        docker("run", "--detach", f"--name={self.container(role)}", *self._run_options(), IMAGE, *command)
        self.services.append(self.container(role))

    def _wait_healthy_service(self, role: str, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while (health := self.health(role)) != "healthy":
            if health == "unhealthy" or time.monotonic() > deadline:
                raise RuntimeError(f"{self.container(role)} is {health}:\n{self.log_tail()}")
            time.sleep(0.5)

    def health(self, role: str) -> str:
        return docker("inspect", "--format={{.State.Health.Status}}", self.container(role))

    def run_containers(self) -> list[str]:
        """Ids of the run containers of this stack that still exist."""
        return docker("ps", "--all", "--quiet", "--no-trunc", f"--filter=label={LABEL}={self.stack_id}").split()

    def _watch_run_containers(self) -> None:
        self._event_stream = subprocess.Popen(
            [
                "docker",
                "events",
                "--format={{json .}}",
                "--filter=type=container",
                f"--filter=label={LABEL}={self.stack_id}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        stream = self._event_stream.stdout
        assert stream is not None
        threading.Thread(
            target=lambda: self.container_events.extend(json.loads(line) for line in stream if line.strip()),
            daemon=True,
        ).start()

    def started_run_containers(self, since: float) -> dict[str, str]:
        """Container id → run id of every run container of this stack Docker started since then."""
        return {
            event["id"]: event["Actor"]["Attributes"]["dagster/run_id"]
            for event in self.container_events
            if event["Action"] == "start" and event["time"] >= int(since)
        }

    def stop(self) -> list[int]:
        for name in [self.container("daemon"), *self.services]:
            subprocess.run(["docker", "stop", f"--time={STOP_TIMEOUT_S}", name], capture_output=True, check=False)
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
        if self.process is not None:
            self.process.wait(timeout=STOP_TIMEOUT_S + 10)
        leftovers = self.run_containers()
        if leftovers:
            docker("rm", "--force", *leftovers)
        subprocess.run(["docker", "volume", "rm", self.compute_logs_volume], capture_output=True, check=False)
        if self._event_stream is not None:
            self._event_stream.terminate()
            self._event_stream.wait(timeout=10)
        self.services.clear()
        return []

    def log_tail(self, lines: int = 120) -> str:
        tail = super().log_tail(lines)
        for name in self.services:
            logs = subprocess.run(["docker", "logs", "--tail=40", name], capture_output=True, text=True, check=False)
            tail += f"\n--- {name} ---\n{logs.stdout}{logs.stderr}"
        return tail


def build_docker_stack(
    root: Path,
    database_url: str,
    dagster_database_url: str,
    *,
    code_server_port: int,
    webserver_port: int,
    settings: dict[str, str],
) -> DockerStack:
    """A stack whose daemon, code server and webserver run in containers of IMAGE; `settings` are
    the worker's variables for every container (runs included)."""
    stack_id = uuid.uuid4().hex[:8]
    pg = make_url(dagster_database_url)
    root.mkdir(parents=True, exist_ok=True)
    # This process reads the same Dagster storage (runs, heartbeats, ticks) and can terminate runs.
    host_instance = _docker_instance(stack_id)
    host_instance["storage"] = {"postgres": {"postgres_url": dagster_database_url}}
    host_instance["run_launcher"]["config"].update(image=IMAGE, network="host")
    host_instance["compute_logs"]["config"]["base_dir"] = str(root / "compute_logs")
    (root / "host-dagster.yaml").write_text(yaml.safe_dump(host_instance))
    base = build_stack(root, database_url, overrides=settings, dagster_yaml=root / "host-dagster.yaml")

    container_instance = root / "container-dagster.yaml"
    container_instance.write_text(yaml.safe_dump(_docker_instance(stack_id)))
    container_instance.chmod(0o644)
    environment = {
        "DAGSTER_PG_USERNAME": pg.username or "",
        "DAGSTER_PG_PASSWORD": pg.password or "",
        "DAGSTER_PG_HOST": pg.host or "",
        "DAGSTER_PG_DB": pg.database or "",
        "DAGSTER_PG_PORT": str(pg.port or 5432),
        "RENDER_WORKER_IMAGE": IMAGE,
        "RENDER_RUN_NETWORK": "host",
        # Host paths mean nothing in a container: DAGSTER_HOME is the image's, data the default.
        **{key: value for key, value in base.stack_env.items() if key not in ("DAGSTER_HOME", "RENDER_DATA_DIR")},
    }
    forwarded = _docker_instance(stack_id)["run_launcher"]["config"]["env_vars"]
    env_file = root / "containers.env"
    env_file.write_text(
        "".join(f"{name}={environment.get(name, '')}\n" for name in dict.fromkeys([*forwarded, *environment]))
    )
    fields: dict[str, Any] = {name: getattr(base, name) for name in RenderStack.__dataclass_fields__}
    return DockerStack(
        **fields,
        stack_id=stack_id,
        code_server_port=code_server_port,
        webserver_port=webserver_port,
        env_file=env_file,
        container_instance=container_instance,
    )


def _docker_instance(stack_id: str) -> dict[str, Any]:
    settings: dict[str, Any] = yaml.safe_load(DOCKER_INSTANCE.read_text())
    launcher = settings["run_launcher"]["config"]
    launcher["env_vars"] = [*launcher["env_vars"], "STORAGE_EMULATOR_HOST"]
    launcher["container_kwargs"]["labels"] = {LABEL: stack_id}
    launcher["container_kwargs"]["volumes"] = [f"render-e2e-{stack_id}-compute-logs:{CONTAINER_HOME}/compute_logs"]
    return settings
