"""An offline RFC 3161 time-stamping authority for tests: OpenSSL 3 signs, a loopback HTTP server answers."""

from __future__ import annotations

import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONFIG = """
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = Test TSA
[ tsa_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
[ ca_ext ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.crt
certs = {dir}/ca.crt
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_authority(folder: Path) -> Path:
    """A CA and a TSA certificate signed by it, with the [tsa] config; returns the config path."""
    (folder / "tsa.cnf").write_text(CONFIG.format(dir=folder))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=Test CA",
         "-config", "tsa.cnf", "-extensions", "ca_ext", cwd=folder)
    _run("req", *ec, "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=Test TSA", "-config", "tsa.cnf", cwd=folder)
    _run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tsa.crt",
         "-days", "3650", "-extfile", "tsa.cnf", "-extensions", "tsa_ext", cwd=folder)
    (folder / "serial").write_text("01\n")
    return folder / "tsa.cnf"


class TsaServer(ThreadingHTTPServer):
    """POST a timestamp query, get ``openssl ts -reply``'s answer; ``requests`` counts them."""

    daemon_threads = True

    def __init__(self, folder: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folder = folder
        self.config = make_authority(folder)
        self.ca_file = folder / "ca.crt"
        self.requests = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The TSA's URL."""
        return f"http://127.0.0.1:{self.server_address[1]}/tsa"


class _Handler(BaseHTTPRequestHandler):
    server: TsaServer

    def log_message(self, *args: object) -> None:
        return None

    def do_POST(self) -> None:  # noqa: N802
        query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock, tempfile.TemporaryDirectory() as tmp:
            self.server.requests += 1
            (Path(tmp) / "q.tsq").write_bytes(query)
            subprocess.run(["openssl", "ts", "-reply", "-config", str(self.server.config), "-queryfile", "q.tsq",
                            "-out", "r.tsr"], cwd=tmp, check=True, capture_output=True)
            reply = (Path(tmp) / "r.tsr").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
