"""The benchmark's CPU accounting: a session's CPU is exact even for a child that ends between two
samples, processes get their role (run workers under both launchers), and the machine's PostgreSQL
and Redis servers are found and counted as roles of their own."""

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from render_assets.adapters.proc_stat import scan
from render_assets.bench.instances import run_launcher_of, storage_kind
from render_assets.bench.process_sampler import RUN_WORKER, SessionSampler, role_of
from render_assets.bench.server_processes import Server, server_cpu_s, server_members, servers_in_use
from render_assets.persistence.database import driver_url
from render_assets_tests.conftest import POSTGRES_ADMIN_URL, REDIS_URL

REPO = Path(__file__).resolve().parents[1]
# Server-side work that costs CPU (about 0.1-0.3 s each), so the servers' counters must move.
PG_BURN = "SELECT sum(i) FROM generate_series(1, 3000000) AS i"
REDIS_BURN = "local x = 0 for i = 1, 2000000 do x = x + i end return x"

# A session leader that, once told to, forks a child burning ~0.4 CPU-s; the child exits and is
# reaped (its CPU moves into the leader's cutime) while the leader lives on.
BURN = """
import os, sys, time
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass
    os._exit(0)
os.waitpid(pid, 0)
print("reaped", flush=True)
sys.stdin.read()
"""


def test_a_reaped_child_is_counted_once_and_whole() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", BURN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        sampler = SessionSampler(leader.pid, period_s=10.0)  # never samples on its own: the child is missed
        before = sampler.snapshot()
        assert leader.stdin is not None
        leader.stdin.write("go\n")
        leader.stdin.flush()
        assert leader.stdout is not None and leader.stdout.readline().strip() == "reaped"
        time.sleep(0.05)
        cpu_s = sampler.cpu_since(before)
        roles = sampler.cpu_by_role_since(before)
    finally:
        leader.communicate("", timeout=10)
    assert 0.35 <= cpu_s <= 1.5, cpu_s
    assert roles["reaped_unsampled"] >= 0.35  # the child never sampled, yet counted


def test_roles_tell_run_workers_under_either_launcher() -> None:
    forkserver = "python -c from multiprocessing.forkserver import main; main(8, 9, ['__main__'])"
    daemon = "/venv/bin/python3 /venv/bin/dagster-daemon run -w workspace.yaml"
    spawned = "python -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=14, pipe_handle=22)"
    assert role_of(spawned, "python -m dagster api grpc --socket /tmp/x") == RUN_WORKER
    assert role_of(forkserver, forkserver) == RUN_WORKER  # forked from the template
    assert role_of(forkserver, daemon) == "run_worker_template"
    assert role_of(daemon, "bash") == "daemon"
    assert role_of("python -m dagster api grpc --lazy-load-user-code", daemon) == "code_server"
    assert role_of("python -c from multiprocessing.resource_tracker import main;main(5)", daemon) == "other"


def test_the_bench_names_the_run_launcher_of_each_instance_file(tmp_path: Path) -> None:
    plain = tmp_path / "dagster.yaml"
    plain.write_text("telemetry:\n  enabled: false\n")
    assert run_launcher_of(plain) == "DefaultRunLauncher"
    forking = tmp_path / "forking.yaml"
    forking.write_text("run_launcher:\n  module: render_assets.orchestration.instance\n  class: ForkingRunLauncher\n")
    assert run_launcher_of(forking) == "ForkingRunLauncher"


def test_the_bench_tells_each_instance_files_storage(tmp_path: Path) -> None:
    # The two files `make bench` compares: development on SQLite, production on PostgreSQL.
    assert storage_kind(REPO / "dagster.yaml") == "sqlite"
    assert storage_kind(REPO / "deploy" / "dagster.production.yaml") == "postgresql"
    forms = {
        "custom": "storage:\n  custom:\n    module: my.storage\n    class: HeldPostgresStorage\n",
        "legacy": "run_storage:\n  module: dagster_postgres.run_storage\n  class: PostgresRunStorage\n",
        "url": "storage:\n  postgres:\n    postgres_url: {env: DAGSTER_PG_URL}\n",
    }
    for name, body in forms.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(body)
        assert storage_kind(path) == "postgresql", name


def test_the_postgres_and_redis_servers_in_use_are_found_with_growing_cpu() -> None:
    servers = {server.role: server for server in servers_in_use([POSTGRES_ADMIN_URL], REDIS_URL)}
    assert set(servers) == {"postgres_server", "redis_server"}, servers
    engine = create_engine(driver_url(POSTGRES_ADMIN_URL))
    client = redis.Redis.from_url(REDIS_URL)
    sampler = SessionSampler(os.getsid(0), period_s=10.0, servers=list(servers.values()))
    try:
        with engine.connect() as connection:
            # This connection's backend is one of the server's members (a child of the postmaster).
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert backend in server_members(servers["postgres_server"], scan())
            before = sampler.snapshot()
            readings = {role: [server_cpu_s(server)] for role, server in servers.items()}
            for _ in range(3):
                connection.execute(text(PG_BURN))
                client.eval(REDIS_BURN, 0)
                for role, server in servers.items():
                    readings[role].append(server_cpu_s(server))
        spent = sampler.server_cpu_since(before)
        by_role = sampler.cpu_by_role_since(before)
    finally:
        engine.dispose()
        client.close()
    for role, read in readings.items():
        figures = [figure for figure in read if figure is not None]
        assert len(figures) == len(read), role
        assert figures == sorted(figures), (role, figures)  # counters never go back
        assert figures[-1] > figures[0], (role, figures)
    assert spent["postgres_server"] > 0 and spent["redis_server"] > 0
    # The servers are roles of their own beside the session's.
    assert by_role["postgres_server"] >= spent["postgres_server"]
    assert "reaped_unsampled" in by_role


def test_a_server_on_no_local_process_is_left_out() -> None:
    # A PostgreSQL whose backend pid is not a local postgres process (remote, or in a container).
    assert server_members(Server("postgres_server", 2**22 + 7, 0), scan()) == []
    assert server_cpu_s(Server("redis_server", 2**22 + 7, 0)) is None
