"""The preflight of a tracking server that requires a login sends the credentials MLflow's client sends.

A tiny server on 127.0.0.1 stands in for MLflow behind Basic auth: it answers ``/health`` and an empty
experiment search only with the right ``Authorization`` header, and records the headers it saw.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fercore.errors import RegistryError
from fercore.tracking.store import check_server

USER, PASSWORD = "ann", "s3cret:!"


@pytest.fixture()
def locked_server():
    seen: list[tuple[str, str | None]] = []
    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's API)
            auth = self.headers.get("Authorization")
            seen.append((self.path.split("?")[0], auth))
            if auth not in (good, "Bearer t0ken"):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.end_headers()
                return
            body = b"OK" if self.path == "/health" else json.dumps({"experiments": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802 (MLflow's searches are POSTs)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen, good
    server.shutdown()


def test_credentials_in_the_uri_or_mlflows_variables_pass_the_preflight(locked_server, monkeypatch):
    host, seen, good = locked_server
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    check_server(f"http://{USER}:s3cret%3A%21@{host}")  # percent-encoded in the URI, as a URI must hold ':' and '!'
    assert seen[-1] == ("/health", good)
    with pytest.raises(RegistryError, match=r"refused the request \(HTTP 401\): set MLFLOW_TRACKING_USERNAME"):
        check_server(f"http://{host}")
    with pytest.raises(RegistryError, match=rf"http://{USER}:\*\*\*@{host} refused"):  # the password is not printed
        check_server(f"http://{USER}:wrong@{host}")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    check_server(f"http://{host}/")
    assert seen[-1] == ("/health", good)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    check_server(f"http://{host}")
    assert seen[-1] == ("/health", "Bearer t0ken")


def test_mlflows_client_sends_the_same_header_from_the_uri_and_from_its_variables(locked_server, monkeypatch):
    from mlflow import MlflowClient

    host, seen, good = locked_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    MlflowClient(f"http://{USER}:s3cret%3A%21@{host}").search_experiments()
    assert seen[-1] == ("/api/2.0/mlflow/experiments/search", good)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    MlflowClient(f"http://{host}").search_experiments()
    assert seen[-1] == ("/api/2.0/mlflow/experiments/search", good)
    check_server(f"http://{host}")
    assert seen[-1] == ("/health", good)
