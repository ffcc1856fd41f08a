"""``metaextract watch URL``: follow a running scan from another terminal or machine.

Reads the scheduler's event stream (``stream.py``) with tornado's WebSocket
client and shows what the scan itself shows: the same bar (or timed lines
when the output is not a terminal), a line per failed file, and a summary
when the run ends.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from .progress import Progress


class WatchError(RuntimeError):
    """The stream could not be followed (refused token, no such route, nothing listening)."""


def socket_url(url: str) -> str:
    """``http(s)://`` as the scan prints it, or ``ws(s)://``: the WebSocket address."""
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            return secure + url[len(plain):]
    if not url.startswith(("ws://", "wss://")):
        raise WatchError(f"not a scan's event stream address (http://HOST:PORT/metaextract/events?token=...): {url}")
    return url


async def follow(url: str, on_message: Any, timeout: float = 30.0) -> None:
    """Call ``on_message`` with each message of the stream at ``url`` until the run's end (or the stream closes)."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    try:
        conn = await websocket_connect(HTTPRequest(socket_url(url), connect_timeout=timeout, request_timeout=timeout))
    except HTTPClientError as exc:
        why = "the token is not this scan's (or the scan is long over)" if exc.code == 403 else f"HTTP {exc.code}"
        raise WatchError(f"the scheduler refused to stream: {why}") from None
    except OSError as exc:
        raise WatchError(f"cannot reach {url.split('?')[0]}: {exc.strerror or exc}") from None
    try:
        while True:
            text = await conn.read_message()
            if text is None:
                return
            message = json.loads(text)
            on_message(message)
            if message.get("type") == "end":
                return
    finally:
        conn.close()


def watch(url: str, enabled: bool | None = None, out: TextIO | None = None) -> dict[str, Any]:
    """Follow the run at ``url``, drawing its progress on stderr; the run's end message (or the last state seen)."""
    import asyncio

    from ..core.text import for_terminal

    out = out or sys.stdout
    seen: dict[str, Any] = {"bar": None, "end": None, "failures": []}

    def on_message(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "state":
            bar = seen["bar"] = Progress.for_output(int(message.get("files") or 0), enabled)
            bar.done, bar.errors, bar.bytes = message.get("done", 0), message.get("failed", 0), message.get("bytes_done", 0)
            if bar.bar is not None:
                bar.bar.update(bar.done)
        elif kind == "file" and seen["bar"] is not None:
            seen["bar"].update(int(message.get("bytes") or 0), not message.get("success"))
            if not message.get("success"):
                seen["failures"].append((message.get("path"), message.get("error") or ""))
        elif kind == "end":
            seen["end"] = message

    try:
        asyncio.run(follow(url, on_message))
    finally:
        if seen["bar"] is not None:
            seen["bar"].close()
    end = seen["end"]
    if end is None:
        print("metaextract: the stream ended before the scan did (the scheduler went away)", file=sys.stderr)
        return {}
    print(f"{end['done']} extracted ({end['failed']} failed) in {end['seconds']:.1f} s", file=out)
    for path, error in seen["failures"][:10]:
        print(f"  failed: {for_terminal(error or str(path))}", file=out)
    return dict(end)
