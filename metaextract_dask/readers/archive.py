"""Zip and tar containers: their bytes as the binary reader reads them, and the list of their members.

The members themselves become catalog rows of their own when a scan looks
into archives (``--into-archives``, ``storage.archives``); the container's
row says what it holds either way.
"""

from __future__ import annotations

from typing import Any

from ..core.model import FileInfo
from ..core.settings import StreamingConfig
from .base import State
from .binary import BinaryChunkReader

#: members listed in one container's record at most (the count is always exact)
MAX_LISTED = 10_000


class ArchiveReader(BinaryChunkReader):
    """A zip or tar file: signatures, entropy and checksum (the binary reader's), and its members."""

    name = "archive"
    formats = frozenset({"zip", "tar"})
    extensions = {".zip": "zip", ".tar": "tar"}
    columns = (("n_members", "int32"),)

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**super().catalog_row(record), "n_members": record.get("n_members")}

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        out = super().finalize(state, info, config)
        from ..storage.archives import list_members

        try:
            members, skipped = list_members(info.path, config.storage_options, kind=info.format)
        except Exception as exc:  # noqa: BLE001 - a damaged directory: the bytes' profile stands, the listing is a warning
            out["warnings"] = [f"its members could not be listed: {type(exc).__name__}: {exc}"]
            return out
        out["n_members"] = len(members)
        out["members"] = [{"name": url.split("::", 1)[0].split("://", 1)[1], "size": st.size, "mtime": st.mtime, "crc": st.etag}
                          for url, st in members[:MAX_LISTED]]
        if skipped:
            out["members_left_out"] = [why for _url, why in skipped]
        return out
