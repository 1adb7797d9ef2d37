"""The benchmark's CPU accounting: a session's CPU is exact even for a child that ends between two
samples, and processes get their role (run workers under both launchers)."""

import subprocess
import sys
import time
from pathlib import Path

from render_assets.bench.process_sampler import RUN_WORKER, SessionSampler, role_of
from render_assets.bench.stack_bench import run_launcher_of

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
    forking = Path(__file__).resolve().parents[1] / "deploy" / "dagster.forking.yaml"
    assert run_launcher_of(forking) == "ForkingRunLauncher"
