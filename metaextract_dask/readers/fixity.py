"""Fixity for every format: the binary reader's checksum beside any format reader.

An archive wants one fixity column for all its files. ``WithChecksum`` wraps
a format reader (HDF5, NetCDF, video, a plugin): its layout gains BLOCK
chunks over the raw bytes, hashed by the same code and to the same
definition as the binary reader's (``checksum.py``), so a file's checksum
does not depend on its format, the strategy, or threads versus processes.
Under SAMPLE_BASED only some blocks are read and the record says the
checksum is partial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig
from .base import State, StreamChunkReader
from .binary import BinaryChunkReader, ByteLayout, file_checksum, read_chunk

#: the key of a fixity chunk (format readers never use a bare string like this one)
FIXITY = "fixity-block"


def is_fixity(spec: ChunkSpec) -> bool:
    return spec.key == FIXITY


class Concat(Sequence):
    """The format's chunks, then the fixity blocks, without materialising the blocks."""

    def __init__(self, inner: Sequence[ChunkSpec], blocks: ByteLayout):
        self.inner, self.blocks = inner, blocks
        meta = getattr(inner, "metadata_indices", None)
        self.metadata_indices = meta if meta is not None else [i for i, s in enumerate(inner) if s.chunk_type is ChunkType.METADATA]

    def __len__(self) -> int:
        return len(self.inner) + len(self.blocks)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        n = len(self.inner)
        if i < n:
            return self.inner[i]
        spec = self.blocks[i - n]
        return replace(spec, chunk_id=i, chunk_type=ChunkType.BLOCK, key=FIXITY)


class WithChecksum(StreamChunkReader):
    """A format reader whose record also carries the file's checksum."""

    def __init__(self, inner: StreamChunkReader):
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.version = inner.version  # type: ignore[misc]
        self.formats = inner.formats  # type: ignore[misc]
        self.native = inner.native  # type: ignore[misc]
        self.extras = inner.extras  # type: ignore[misc]

    def __reduce__(self):
        return (WithChecksum, (self.inner,))

    def native_spec(self, spec: ChunkSpec) -> bool:
        return not is_fixity(spec) and self.inner.native_spec(spec)

    def unavailable(self) -> str | None:
        return self.inner.unavailable()

    def one_pass(self, info: FileInfo) -> bool:
        return self.inner.one_pass(info)

    def chunk_size(self, requested: int) -> int:
        return self.inner.chunk_size(requested)

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        """The format's chunks at ``chunk_size``; fixity blocks at it rounded up to whole checksum blocks."""
        blocks = ByteLayout(info.path, info.size, BinaryChunkReader().chunk_size(chunk_size))
        return Concat(self.inner.layout(info, chunk_size), blocks)

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        if is_fixity(spec):
            return {"inner": None, "blocks": read_chunk(spec, config, profile=False)["blocks"]}
        return {"inner": self.inner.summarize(spec, config), "blocks": {}}

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """The format's chunks in one call (one open of the file), the blocks after."""
        own = [s for s in specs if not is_fixity(s)]
        inner = iter(self.inner.summarize_all(own, config) if own else [])
        return [self.summarize(s, config) if is_fixity(s) else {"inner": next(inner), "blocks": {}} for s in specs]

    def merge(self, a: State, b: State) -> State:
        if a["inner"] is None or b["inner"] is None:
            inner = a["inner"] if b["inner"] is None else b["inner"]
        else:
            inner = self.inner.merge(a["inner"], b["inner"])
        return {"inner": inner, "blocks": {**a["blocks"], **b["blocks"]}}

    def public_summary(self, state: State) -> dict[str, Any]:
        if state["inner"] is None:
            return {"checksum_blocks": len(state["blocks"])}
        return self.inner.public_summary(state["inner"])

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        return self.inner.finalize(state["inner"], info, config)

    def record(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        return {**self.inner.record(state["inner"], info, config), "checksum": file_checksum(state["blocks"], info, config.checksum)}

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        return self.inner.catalog_row(record)
