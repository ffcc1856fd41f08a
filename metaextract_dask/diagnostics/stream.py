"""A run's events as JSON over a WebSocket on the scheduler's HTTP server, for ``metaextract watch``.

The metrics plugin (``plugin.py``) already receives every file's outcome; it
mounts ``/metaextract/events`` on the scheduler's HTTP server (the one the
dashboard uses) and sends each outcome to the sockets following that run.
A run is followed with its token (``?token=``), made by the scan that
started it and printed only to the user who started it: without it the
upgrade is refused (403). The HTTP server is plain text unless the
dashboard is given TLS (``distributed.scheduler.dashboard.tls``): on a
shared network, reach it through an SSH tunnel. The socket only reads:
nothing sent to it is acted on.

Messages, one JSON object each:

- ``{"type": "state", "files": N, "bytes": B, "done": D, "failed": F, "bytes_done": b, "finished": bool}``
  first, so a late watcher starts where the run is;
- ``{"type": "file", "path", "success", "bytes", "error", "error_type", "duration"}`` per file;
- ``{"type": "end", "done", "failed", "bytes_done", "seconds"}`` when the run ends.
"""

from __future__ import annotations

import json
from typing import Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler

#: where the plugin mounts the stream on the scheduler's HTTP server
ROUTE = "/metaextract/events"
#: seconds a watcher's token may be unknown before it is refused (a watcher started with the scan may come first)
TOKEN_WAIT = 5.0


def watch_url(dashboard: str | None, token: str | None) -> str | None:
    """The stream of a run on the scheduler whose dashboard is at ``dashboard`` (its ``/status`` link)."""
    if not dashboard or not token:
        return None
    base = dashboard.split("/status")[0].rstrip("/")
    return f"{base}{ROUTE}?token={token}"


def state_message(stats: Any) -> dict[str, Any]:
    """What a watcher is told first: the run so far (``stats``: a ``RunStats``)."""
    done = sum(stats.files.values())
    failed = sum(n for (_, outcome), n in stats.files.items() if outcome == "failed")
    return {"type": "state", "files": stats.expected_files, "bytes": stats.expected_bytes, "done": done, "failed": failed,
            "bytes_done": sum(stats.bytes_by_type.values()), "finished": stats.finished}


def file_message(f: dict[str, Any]) -> dict[str, Any]:
    """One file's outcome as the plugin received it (``execution.batch.outcome``)."""
    return {"type": "file", **{k: f.get(k) for k in ("path", "success", "bytes", "error", "error_type", "duration")}}


def end_message(stats: Any) -> dict[str, Any]:
    state = state_message(stats)
    return {"type": "end", "done": state["done"], "failed": state["failed"], "bytes_done": state["bytes_done"],
            "seconds": round(stats.last - stats.started, 3)}


class EventStream(WebSocketHandler):
    """``GET /metaextract/events?token=T``: the events of the run whose token is T."""

    def initialize(self, plugin: Any) -> None:
        self.plugin = plugin
        self.run_id: str | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        import asyncio

        token = self.get_argument("token", "")
        run = self.plugin.run_of_token(token)
        for _ in range(int(TOKEN_WAIT / 0.1)):  # the scan prints its URL as its client starts, just before the run does
            if run is not None:
                break
            await asyncio.sleep(0.1)
            run = self.plugin.run_of_token(token)
        if run is None:
            self.set_status(403)
            self.finish("metaextract: no running or recent scan has this token")
            return
        self.run_id = run
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        return True  # the token, not the page a browser came from, says who may follow the run

    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self.run_id is not None  # set by get() before the upgrade
        self.plugin.follow(self.run_id, self)

    def on_message(self, message: str | bytes) -> None:
        """Nothing a watcher sends is acted on."""

    def on_close(self) -> None:
        if self.run_id is not None:
            self.plugin.unfollow(self.run_id, self)

    def send(self, message: dict[str, Any]) -> bool:
        """Send one message; False when the socket is gone (the plugin then forgets it)."""
        try:
            self.write_message(json.dumps(message, default=str))
            return True
        except WebSocketClosedError:
            return False
