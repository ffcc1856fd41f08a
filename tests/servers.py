"""Real servers for remote-archive tests: an HTTP server with Range support, and moto's S3 server.

Both listen on 127.0.0.1 on a free port and serve until stopped. The HTTP
server answers HEAD and GET with ``Content-Length``, ``ETag``,
``Last-Modified`` and ``Accept-Ranges``, and ``Range: bytes=a-b`` with 206,
as object stores and static file servers do; it counts the requests it
answers, so tests compare our counts with the server's own.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from typing import Any

from metaextract_dask.storage.loopback import refuse_range, requested_range  # one reading of RFC 9110's ranges


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with byte ranges, ETags and a request log."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as object stores and nginx answer: no 40 ms delayed-ACK stall per small answer

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        if self.path in ("/__stats__", "/__reset__"):
            return self._stats(reset=self.path == "/__reset__")
        latency = getattr(self.server, "latency", 0.0)
        if latency:
            import time

            time.sleep(latency)  # an object store's time to first byte
        path = self.translate_path(self.path)
        if os.path.isdir(path) or not os.path.isfile(path):
            if os.path.isdir(path) and body:
                return super().do_GET()  # a folder's listing, as python -m http.server gives it
            self.send_error(404)
            return
        st = os.stat(path)
        size = st.st_size
        wanted = self.headers.get("Range")
        status, start, end = requested_range(wanted, size)
        if status == 416:
            refuse_range(self, size)
            return
        self.server.log.append((self.command, self.path, wanted, end - start + 1 if body else 0))  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", '"' + hashlib.md5(f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest() + '"')
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    data = f.read(min(left, 1 << 20))
                    if not data:
                        break
                    self.wfile.write(data)
                    left -= len(data)


    def _stats(self, reset: bool) -> None:
        import json

        per_path: dict[str, list[int]] = {}
        for _command, path, _range, nbytes in list(self.server.log):  # type: ignore[attr-defined]
            entry = per_path.setdefault(path, [0, 0])
            entry[0] += 1
            entry[1] += nbytes
        if reset:
            self.server.log.clear()  # type: ignore[attr-defined]
        data = json.dumps(per_path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def range_server(folder: str | os.PathLike, tls: tuple[str, str] | None = None, latency: float = 0.0) -> Iterator[Any]:
    """An HTTP server of ``folder`` on 127.0.0.1 (HTTPS with ``tls``: certificate and key files); yields it (``.url``, ``.log``).

    ``latency``: seconds each request waits before its answer, as an object store's first byte does.
    """
    handler = lambda *a, **k: RangeHandler(*a, directory=os.fspath(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.log = []  # type: ignore[attr-defined]
    server.latency = latency  # type: ignore[attr-defined]
    scheme = "http"
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    server.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's S3 server on 127.0.0.1, as s3fs's own tests run it; yields the storage options that reach it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
    try:
        yield options
    finally:
        server.stop()


def upload(options: dict[str, Any], bucket: str, files: dict[str, str | os.PathLike]) -> None:
    """Create ``bucket`` and put each local file under its key."""
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    for key, local in files.items():
        fs.put_file(os.fspath(local), f"{bucket}/{key}")
    fs.invalidate_cache()


def self_signed(folder: str | os.PathLike) -> tuple[str, str]:
    """(certificate, key) PEM files for 127.0.0.1, made now with cryptography (the certificate is its own CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = os.path.join(folder, "server.pem"), os.path.join(folder, "server.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


if __name__ == "__main__":  # python tests/servers.py FOLDER [LATENCY]: serve until killed (the benchmarks' server process)
    import sys
    import time

    with range_server(sys.argv[1], latency=float(sys.argv[2]) if len(sys.argv) > 2 else 0.0) as served:
        print(served.url, flush=True)
        while True:
            time.sleep(3600)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def separate_scheduler(workers: int = 2, nthreads: int = 1) -> Iterator[tuple[str, int, list[Any]]]:
    """A ``dask scheduler`` with this project's preload and ``workers`` ``dask worker`` processes (``w0``, ``w1``...),
    each its own process on 127.0.0.1, as a site runs them: (scheduler address, dashboard port, worker processes),
    once every worker has joined. All are killed afterwards."""
    import subprocess
    import sys

    from distributed import Client

    port, dash = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", f"127.0.0.1:{dash}", "--preload", "metaextract_dask.diagnostics.preload"], **quiet)]
    try:
        started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", str(nthreads),
                                     "--no-nanny", "--host", "127.0.0.1", "--name", f"w{i}"], **quiet) for i in range(workers)]
        procs += started
        with Client(address, timeout=60) as ready:
            ready.wait_for_workers(workers, timeout=60)
        yield address, dash, started
    finally:
        for p in procs:
            p.kill()
            p.wait()
