"""One remote object served on 127.0.0.1 with HTTP Range, for native tools that take only a URL.

libnetcdf (``#mode=bytes``) and ffprobe read HTTP with byte ranges, but not
s3://, zip members, or stores that need credentials. They are given
``http://127.0.0.1:PORT/TOKEN/NAME`` instead; each of their range requests
is answered from an fsspec file object opened with the scan's storage
options, so every fetch is counted and credentials never leave this process
(not on a command line, not in a URL).

Another user of this machine can reach a loopback port: every request is
refused unless the socket it comes from belongs to this user (the kernel's
table of TCP sockets, ``/proc/net/tcp``, matched on both ends of the
connection, so a neighbour connecting from ``127.0.0.2`` on the server's own
port number is not taken for the server), and it must carry the random
token. The token never reaches a command line (``/proc/PID/cmdline`` is
world-readable): libnetcdf, in this process, has it in its URL's path; an
ffmpeg tool gets a URL without it and reaches the server as its HTTP proxy,
``http_proxy=http://me:TOKEN@127.0.0.1:PORT`` in its environment (readable
by this user only), answering the server's 407 challenge with the token.
The server lives for one file's read.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import ipaddress
import os
import re
import secrets
import threading
import urllib.parse
from typing import Any, Iterator

from .remote import IOCount, current_count, open_remote
from .urls import basename

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
#: bytes a native tool's open-ended range request is answered with at most (it reads on, or asks again)
MAX_RESPONSE = 8 * 1024 * 1024


def requested_range(header: str | None, size: int) -> tuple[int, int, int]:
    """(status, first byte, last byte) answering a ``Range: bytes=a-b`` header (one range: the tools it serves ask no more): 200 the whole object,
    206 a part (``a-``, ``a-b``, or the suffix ``-n``), 416 a malformed or unsatisfiable range."""
    if not header:
        return 200, 0, size - 1
    m = _RANGE.match(header.strip())
    if not m or (not m[1] and not m[2]):
        return 416, 0, -1
    if m[1]:
        start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
    else:  # a suffix: the last N bytes
        start, end = max(0, size - int(m[2])), size - 1
    return (416, 0, -1) if start >= size or end < start else (206, start, end)


def refuse_range(handler: http.server.BaseHTTPRequestHandler, size: int) -> None:
    """416 with the object's size, as RFC 9110 asks."""
    handler.send_response(416)
    handler.send_header("Content-Range", f"bytes */{size}")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _hex_address(field: str) -> tuple[str, int]:
    """``/proc/net/tcp``'s ``0100007F:1F90`` (the address in host byte order) -> ("127.0.0.1", 8080)."""
    addr, port = field.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = str(ipaddress.IPv4Address(raw[::-1]))
    else:  # IPv6: four 32-bit words, each in host (little-endian) order
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip6 = ipaddress.IPv6Address(words)
        host = str(ip6.ipv4_mapped or ip6)
    return host, int(port, 16)


def socket_uid(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid owning the TCP socket whose own end is ``local`` and whose peer is ``remote`` (Linux), or None.

    Both ends are matched: a lookup by port alone takes a neighbour who
    connects from another loopback address (``127.0.0.2``) using the
    server's port number as its own for the server's listening socket.
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if _hex_address(fields[1]) == local and _hex_address(fields[2]) == remote:
                        return int(fields[7])
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    #: headers and body go out as separate writes: with Nagle's algorithm each small answer waits for the
    #: client's delayed ACK, 40 ms (libnetcdf's 28 requests to open a netCDF-4 file took 1.2 s)
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # quiet: the scan reports what matters
        pass

    def _allowed(self) -> bool | None:
        """True: this user's request with the token; None: this user's, asked as a proxy without the token yet
        (answered 407, which an ffmpeg tool answers with its proxy credentials); False: refused."""
        if os.name == "posix" and os.path.exists("/proc/net/tcp"):
            peer = (str(self.client_address[0]), int(self.client_address[1]))
            host, port = self.server.server_address[:2]
            if socket_uid(peer, (str(host), int(port))) != os.getuid():
                return False
        token = self.server.token
        if urllib.parse.urlsplit(self.path).path.split("/")[1:2] == [token]:
            return True
        if not self.path.startswith("http://"):  # not a proxy request: the token must be in the path
            return False
        scheme, _, credentials = (self.headers.get("Proxy-Authorization") or "").partition(" ")
        if scheme.lower() != "basic" or not credentials:
            return None
        try:
            _user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(password, token)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._respond(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._respond(body=True)

    def _respond(self, body: bool) -> None:
        allowed = self._allowed()
        if allowed is None:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="metaextract"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not allowed:
            self.send_error(403)
            return
        size = self.server.size
        status, start, end = requested_range(self.headers.get("Range"), size)
        if status == 416:
            refuse_range(self, size)
            return
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        pos = start
        try:
            while pos <= end:
                data = self.server.read(pos, min(end + 1, pos + MAX_RESPONSE))
                if not data:
                    break
                self.wfile.write(data)
                pos += len(data)
        except (BrokenPipeError, ConnectionResetError):  # the tool had read enough
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, f: Any, size: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.f, self.size, self.token = f, size, secrets.token_urlsafe(24)
        self._lock = threading.Lock()

    def read(self, start: int, end: int) -> bytes:
        with self._lock:  # one file object: its position and cache are shared
            self.f.seek(start)
            return self.f.read(end - start)

    def handle_error(self, request: Any, client_address: Any) -> None:  # a tool closing early is not an error
        pass


#: the host name an ffmpeg tool is given: it never resolves (the request goes to the proxy, the loopback server)
PROXIED_HOST = "metaextract.invalid"


def tool_access(url: str) -> tuple[str, dict[str, str]]:
    """(URL, environment) of a loopback URL (``served``'s) for a tool started as its own process: the token goes in
    the environment as the password of its HTTP proxy (this server), never on its command line."""
    parts = urllib.parse.urlsplit(url)
    _, token, name = parts.path.split("/", 2)
    env = {**os.environ, "http_proxy": f"http://me:{token}@127.0.0.1:{parts.port}", "no_proxy": "", "NO_PROXY": ""}
    return f"http://{PROXIED_HOST}/{name}", env


@contextlib.contextmanager
def served(url: str, size: int, block_size: int | None = None, cache_type: str = "blockcache") -> Iterator[tuple[str, IOCount]]:
    """(loopback URL, request count) of the object at ``url`` for the duration of the block.

    The URL holds the server's token: give it to code in this process only
    (libnetcdf); a tool started as a process gets ``tool_access(url, ...)``.
    ``cache_type``: "blockcache" (default, blocks of ``metaextract.remote.block-size``) for libnetcdf's
    scattered metadata reads; "readahead" for a tool that reads on from where it is (ffprobe).
    """
    count = current_count() or IOCount()  # the server's threads count into the block that started it
    f = open_remote(url, size=size, block=block_size, cache_type=cache_type, count=count)
    server = _Server(f, size)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name="metaextract-loopback")
    thread.start()
    try:
        name = urllib.parse.quote(basename(url) or "object")
        yield f"http://127.0.0.1:{server.server_address[1]}/{server.token}/{name}", count
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(Exception):
            f.close()

