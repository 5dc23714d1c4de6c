"""A real loopback HTTP server for tests: recorded fixtures plus failure modes (status, stall, drip, drop, huge, binary)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "http"


class FixtureServer(ThreadingHTTPServer):
    """Serves ``routes`` (path -> (status, headers, body)) and files under tests/fixtures/http."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.log: list[tuple[float, str]] = []
        self.host_headers: list[str] = []   # the Host header of every request, in order
        self.hits: dict[str, int] = {}
        self.sent: dict[str, bytes] = {}      # the exact body bytes last sent per path
        self.latency: dict[str, float] = {}   # path prefix -> seconds to wait before answering
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (the address it listens on)."""
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def url(self, path: str) -> str:
        """Absolute URL of ``path``."""
        return self.base + path

    @property
    def allow(self) -> str:
        """The ``defaults.allow_private`` entry that lets the crawler reach exactly this server."""
        return f"{self.server_address[0]}:{self.server_address[1]}"

    def add(self, path: str, body: bytes | str, status: int = 200, content_type: str = "text/html; charset=utf-8",
            **headers: str) -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = (status, {"Content-Type": content_type, **headers}, data)
        return self.url(path)


class _Handler(BaseHTTPRequestHandler):
    server: FixtureServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return None

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        with self.server.lock:
            self.server.log.append((time.monotonic(), path))
            self.server.hits[path] = self.server.hits.get(path, 0) + 1
            self.server.host_headers.append(self.headers.get("Host", ""))
            hit = self.server.hits[path]
        wait = max((s for prefix, s in self.server.latency.items() if path.startswith(prefix)), default=0.0)
        if wait:
            time.sleep(wait)
        if path.startswith("/status/"):
            return self._send(int(path.rsplit("/", 1)[1]), {"Content-Type": "text/plain"}, b"status")
        if path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"<html>")
            self.wfile.flush()
            time.sleep(float(query.get("seconds", ["30"])[0]))
            return None
        if path.startswith("/drip"):  # headers at once, then one byte every `every` seconds
            every, size = float(query.get("every", ["2"])[0]), int(query.get("bytes", ["100"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            try:
                for _ in range(size):
                    time.sleep(every)
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                with self.server.lock:
                    self.server.log.append((time.monotonic(), "client stopped reading " + path))
            self.close_connection = True
            return None
        if path == "/drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if path == "/huge":
            size = int(float(query.get("mb", ["20"])[0]) * 1024 * 1024)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            if "nolength" not in query:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"<p>" + b"x" * 65533
            try:
                for _ in range(size // len(chunk)):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.server.log.append((time.monotonic(), "client stopped reading " + path))
            self.close_connection = True
            return None
        if path == "/flaky":  # 503 with Retry-After the first time, then a page
            if hit == 1:
                return self._send(503, {"Content-Type": "text/plain", "Retry-After": "1"}, b"busy")
            return self._send(200, {"Content-Type": "text/html; charset=utf-8"},
                              b"<html><body><article><p>" + b"Recovered page text. " * 20 + b"</p></article></body></html>")
        if path in self.server.routes:
            status, headers, body = self.server.routes[path]
            return self._send(status, headers, body)
        file = FIXTURES / path.lstrip("/")
        if file.is_file():
            meta = file.with_name(file.name + ".headers.json")
            headers = json.loads(meta.read_text()) if meta.is_file() else {"Content-Type": "text/html; charset=utf-8"}
            return self._send(200, headers, file.read_bytes())
        return self._send(404, {"Content-Type": "text/html"}, b"<h1>404</h1>")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        etag = headers.get("ETag")
        if etag and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:
            self.server.sent[urlsplit(self.path).path] = body


def allow_private(*urls: str) -> list[str]:
    """``defaults.allow_private`` entries for exactly the loopback servers ``urls`` are on (IP:PORT each)."""
    out: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        if host == "127.0.0.1" or host.startswith("127."):
            entry = f"{host}:{port}"
        elif host == "::1":
            entry = f"[::1]:{port}"
        else:
            continue
        if entry not in out:
            out.append(entry)
    return out
