"""Shared fixtures: a loopback HTTP server, the demo site, databases, a tiny real transformer."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.httpserver import FixtureServer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables must never route loopback test traffic elsewhere."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the network: any connection outside loopback fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("127."):
            raise OSError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def fixture_server() -> Iterator[FixtureServer]:
    """A real HTTP server on 127.0.0.1 serving fixtures and failure modes."""
    server = FixtureServer()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def demo_site() -> Iterator[object]:
    """The bundled demo news site on a free loopback port."""
    from monitor.demo.site import DemoServer

    with DemoServer() as site:
        yield site


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh database file path."""
    return tmp_path / "monitor.db"


@pytest.fixture(scope="session")
def models_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An isolated models cache (MONITOR_MODELS) for the test session."""
    path = tmp_path_factory.mktemp("models")
    os.environ["MONITOR_MODELS"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder + WordPiece tokenizer built locally (no download), ~30k parameters."""
    from tests.tiny_model import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def artifacts() -> Path:
    """Where tests save screenshots and reports (kept after the run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def make_server() -> Iterator[object]:
    """Factory of fresh loopback servers (each its own port, so its own host for politeness)."""
    servers: list[FixtureServer] = []

    def make() -> FixtureServer:
        server = FixtureServer()
        server.thread.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()
