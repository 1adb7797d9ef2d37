"""The image's health check: the probe each role gets, and probes against real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from render_assets.container_health import Probe, check, main_command, probe_for
from render_assets_tests.conftest import free_port


def test_the_command_is_read_after_docker_init() -> None:
    cmdline = b"/sbin/docker-init\0--\0dagster-webserver\0--port\x003001\0"
    assert main_command(cmdline) == ["dagster-webserver", "--port", "3001"]
    assert main_command(b"dagster-daemon\0run\0") == ["dagster-daemon", "run"]


@pytest.mark.parametrize(
    ("command", "probe"),
    [
        ("/opt/render-assets/bin/dagster-webserver --host 0.0.0.0 -p 3001", Probe("http", 3001, "/server_info")),
        ("dagster-webserver --grpc-host code-server --grpc-port 4000", Probe("http", 3000, "/server_info")),
        (
            "dagster code-server start --host 0.0.0.0 --port 4000 -m render_assets.orchestration.definitions",
            Probe("tcp", 4000),
        ),
        ("dagster api grpc --port=4100 -m render_assets.orchestration.definitions", Probe("tcp", 4100)),
        ("render-assets serve --host 0.0.0.0 --port 8001", Probe("http", 8001, "/healthz")),
        ("dagster-daemon run --grpc-host code-server --grpc-port 4000", Probe("process")),
        ("dagster api execute_run {}", Probe("process")),  # a run worker
    ],
)
def test_each_role_gets_its_probe(command: str, probe: Probe) -> None:
    assert probe_for(command.split()) == probe


@pytest.fixture
def http_port() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/server_info" else 503)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_probes_pass_on_success_and_fail_on_an_error_status(http_port: int) -> None:
    check(Probe("http", http_port, "/server_info"))
    with pytest.raises(OSError, match="503"):
        check(Probe("http", http_port, "/healthz"))  # e.g. Redis or the database unreachable


def test_tcp_probes_need_a_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        check(Probe("tcp", listener.getsockname()[1]))
    with pytest.raises(OSError):
        check(Probe("tcp", free_port()))
    check(Probe("process"))  # nothing to reach: the process is the container
