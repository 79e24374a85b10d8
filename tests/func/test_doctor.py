from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import Invoke


def _checks(stdout: str) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(stdout)["checks"]}


def test_doctor_on_a_fresh_project_is_ok(project: Path, cli: Invoke) -> None:
    result = cli("doctor", "--json", cwd=project)
    assert result.exit_code == 0, result.stdout
    checks = _checks(result.stdout)
    assert checks["config"]["status"] == "ok"
    assert checks["git"]["status"] == "ok"
    assert checks["store"]["status"] == "ok"
    assert ".mlops" in checks["store"]["detail"]
    assert checks["docker"]["status"] == "skip"
    assert checks["registry"]["status"] == "skip"


def test_doctor_text_output_one_line_per_check(project: Path, cli: Invoke) -> None:
    result = cli("doctor", cwd=project)
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["config", "git", "store", "docker", "registry"]
    assert [line.split()[0] for line in lines] == ["ok", "ok", "ok", "skip", "skip"]


def test_doctor_without_config_fails_with_hint(tmp_path: Path, cli: Invoke) -> None:
    result = cli("doctor", cwd=tmp_path)
    assert result.exit_code == 4
    config_line = result.stdout.splitlines()[0]
    assert config_line.startswith("fail")
    assert "mlopsctl init" in config_line


def test_doctor_with_invalid_config_still_checks_the_rest(project: Path, cli: Invoke) -> None:
    text = (project / "mlops.yaml").read_text().replace("store:", "stor:")
    (project / "mlops.yaml").write_text(text)
    result = cli("doctor", "--json", cwd=project)
    assert result.exit_code == 4
    checks = _checks(result.stdout)
    assert checks["config"]["status"] == "fail"
    assert "stor" in checks["config"]["detail"]
    assert checks["store"]["status"] == "ok"


class _RegistryHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/v2/" else 404
        self.send_response(code)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RegistryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _add_config(project: Path, text: str) -> None:
    with (project / "mlops.yaml").open("a") as handle:
        handle.write(text)


def test_doctor_checks_a_configured_registry(
    project: Path, cli: Invoke, registry_port: int
) -> None:
    _add_config(project, f"registry:\n  url: 127.0.0.1:{registry_port}\n  insecure: true\n")
    result = cli("doctor", "--json", cwd=project)
    assert result.exit_code == 0, result.stdout
    registry = _checks(result.stdout)["registry"]
    assert registry["status"] == "ok"
    assert "HTTP 200" in registry["detail"]


def test_doctor_reports_unreachable_registry_and_docker(project: Path, cli: Invoke) -> None:
    port = _free_port()
    _add_config(
        project,
        f"registry:\n  url: 127.0.0.1:{port}\n"
        f"docker:\n  hosts:\n    gpu-1: {{url: 'tcp://127.0.0.1:{port}'}}\n",
    )
    result = cli("doctor", "--json", cwd=project)
    assert result.exit_code == 4
    checks = _checks(result.stdout)
    assert checks["registry"]["status"] == "fail"
    assert checks["registry"]["hint"]
    assert checks["docker:gpu-1"]["status"] == "fail"
    assert checks["docker:gpu-1"]["hint"]
