"""The binary reader: any file, as fixed byte ranges.

Per chunk it hashes 1 MiB blocks (see checksum.py) and histograms up to
``entropy_sample`` bytes; the header chunk keeps the first bytes for the
signature and the footer chunk the last bytes for trailing signatures.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Generator, Sequence
from typing import Any

from ..core import checksum
from ..core.checksum import CHECKSUM_BLOCK
from ..core.errors import FileChangedError
from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.pin import descriptor
from ..core.settings import StreamingConfig
from ..storage.urls import is_url
from .base import State, StreamChunkReader
from .detect import HEAD_BYTES, TAIL_BYTES, trailing_signatures

#: a chunk is read in pieces of at most this size, so memory per task stays
#: bounded however large the chunk size grows
READ_PIECE = CHECKSUM_BLOCK  # a whole number of checksum blocks, small enough to stay in the CPU cache


class ByteLayout(Sequence):
    """Fixed-size byte ranges, computed on demand (a 20 TiB file is cheap)."""

    metadata_indices: tuple[int, ...] = ()  # byte ranges carry no METADATA chunk

    def __init__(self, path: str, size: int, chunk_size: int, identity: str | None = None):
        self.path, self.size, self.chunk_size, self.identity = path, size, chunk_size, identity
        self._n = max(1, -(-size // chunk_size))

    def __len__(self) -> int:
        return self._n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[i] for i in range(self._n))  # Sequence's own iteration ends on an IndexError: a small file's plan paid for it

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        offset = i * self.chunk_size
        kind = ChunkType.HEADER if i == 0 else ChunkType.FOOTER if i == self._n - 1 else ChunkType.BLOCK
        return ChunkSpec(self.path, i, kind, offset, min(self.chunk_size, self.size - offset), identity=self.identity)


def entropy_bits(hist: Any) -> float:
    """Shannon entropy in bits per byte of a 256-bin histogram: log2(n) - sum(c log2 c) / n over its counts c (n in
    all); counts of a small sample look their c log2 c up in a table (two NumPy calls where there were seven)."""
    import numpy as np

    total = int(hist.sum())
    if total == 0:
        return 0.0
    if total <= SMALL_SAMPLE:
        return max(0.0, float(np.log2(total) - _c_log_c()[hist].sum() / total))
    p = hist[hist > 0] / total
    return float(-(p * np.log2(p)).sum())


@functools.lru_cache(maxsize=1)
def _c_log_c() -> Any:
    """c * log2(c) for every count of a small sample (0 for 0)."""
    import numpy as np

    c = np.arange(SMALL_SAMPLE + 1, dtype=np.float64)
    out = np.zeros_like(c)
    np.multiply(c[1:], np.log2(c[1:]), out=out[1:])
    return out


_EDGES: Any = None
_local = threading.local()


def _piece_buffer() -> memoryview:
    """This thread's 1 MiB read buffer, reused by every chunk task it runs.

    Reused: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``,
    which also turns off glibc's adaptive mmap threshold, so a fresh 1 MiB
    buffer per task is an mmap, 256 page faults and an munmap (a full scan
    took 25% longer). Page-aligned (an anonymous mapping, not a bytearray,
    whose data starts just past a header): the kernel's copy into it measured
    3 to 5% faster.
    """
    buf = getattr(_local, "buf", None)
    if buf is None:
        import mmap

        _local.mapping = mmap.mmap(-1, READ_PIECE)
        buf = _local.buf = memoryview(_local.mapping)
    return buf


#: a sample this small is counted with ``np.bincount`` (it holds the GIL for microseconds; sorting costs more)
SMALL_SAMPLE = 64 * 1024


def byte_histogram(data: memoryview | bytes) -> Any:
    """Counts of each byte value.

    Sorting and bisecting releases the GIL where ``np.bincount`` holds it, so
    two chunk tasks in one worker histogram their samples at the same time.
    """
    import numpy as np

    if len(data) <= SMALL_SAMPLE:
        return np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    global _EDGES
    if _EDGES is None:
        _EDGES = np.arange(257)
    ordered = np.sort(np.frombuffer(data, dtype=np.uint8), kind="stable")
    return np.diff(np.searchsorted(ordered, _EDGES)).astype(np.int64)


def _read_full(fd: int, view: memoryview, offset: int) -> int:
    """pread until the view is full or the file ends."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _local_pieces(spec: ChunkSpec, view: memoryview, want_tail: bool) -> Generator[memoryview, None, None]:
    """The chunk's bytes in pieces of at most one view, read with pread; then the file's tail (b"" unless it ends here)."""
    done = 0
    pinned = descriptor(spec.path)  # the probe's descriptor of a small file: read, not opened again
    fd = os.open(spec.path, os.O_RDONLY) if pinned is None else pinned
    try:
        while done < spec.size:
            want = min(len(view), spec.size - done)
            got = _read_full(fd, view[:want], spec.offset + done)
            if got < want:
                raise FileChangedError(
                    spec.path, f"file shrank while being read: chunk {spec.chunk_id} ended at byte {spec.offset + done}"
                )
            yield view[:got]
            done += got
        end = spec.offset + spec.size
        tail = b""
        if want_tail and end >= os.fstat(fd).st_size:
            start = max(0, end - TAIL_BYTES)
            tail = os.pread(fd, end - start, start)
        yield memoryview(tail)
    finally:
        if pinned is None:
            os.close(fd)


def _remote_pieces(spec: ChunkSpec, piece: int, want_tail: bool) -> Generator[memoryview, None, None]:
    """The chunk's bytes from one ranged request (one byte more tells whether the object ends here); then its tail."""
    from ..storage.remote import read_range

    data = read_range(spec.path, spec.offset, spec.offset + spec.size + 1)
    if len(data) < spec.size:
        raise FileChangedError(spec.path, f"object shrank while being read: chunk {spec.chunk_id} ended at byte {spec.offset + len(data)}")
    whole = memoryview(data)[: spec.size]
    for at in range(0, spec.size, piece):
        yield whole[at : at + piece]
    tail = b""
    if want_tail and len(data) == spec.size:
        end = spec.offset + spec.size
        tail = bytes(whole[-TAIL_BYTES:]) if spec.size >= TAIL_BYTES or spec.offset == 0 else read_range(spec.path, max(0, end - TAIL_BYTES), end)
    yield memoryview(tail)


def read_chunk(spec: ChunkSpec, config: StreamingConfig, profile: bool = True) -> State:
    """Read one byte range in bounded pieces and summarize it.

    ``profile=False`` only hashes (the fixity chunks of format readers):
    no entropy sample, no head or tail kept. A remote object's chunk is one
    ranged request.
    """
    digest = checksum.one_shot(config.checksum) if config.checksum else None
    digests: list[bytes] = []
    sample: list[bytes] = []  # the entropy sample, histogrammed after the reads: hashing starts before NumPy is imported
    sampled = 0
    view = _piece_buffer()  # one checksum block: stays in the CPU cache between the copy and the hash
    head = b""
    pieces = _remote_pieces(spec, len(view), profile) if is_url(spec.path) else _local_pieces(spec, view, profile)
    done = 0
    tail = b""
    with contextlib.closing(pieces):  # the local reader's descriptor closes here, not when the generator is collected
        for piece in pieces:
            if done >= spec.size:
                tail = bytes(piece)  # the last item: the file's tail
                break
            if digest is not None:
                digests.append(digest(piece))  # a piece is one checksum block (READ_PIECE)
            if profile and sampled < config.entropy_sample:
                take = bytes(piece[: config.entropy_sample - sampled])
                sample.append(take)
                sampled += len(take)
            if profile and spec.offset == 0 and done == 0:
                head = bytes(piece[:HEAD_BYTES])
            done += len(piece)
    return _state(spec.offset, spec.size, b"".join(digests) if digest is not None else None, b"".join(sample), head, tail)


def _state(offset: int, size: int, digests: bytes | None, sample: bytes | memoryview, head: bytes, tail: bytes) -> State:
    """A chunk's summary: its block digests (None: no checksum), the histogram of its entropy sample, its head and the
    file's tail (when they are in it)."""
    hist = byte_histogram(sample)
    return {
        "blocks": {offset: (size, digests)} if digests is not None else {},
        "hist": hist,
        "profile": [(offset, entropy_bits(hist))],
        "head": head,
        "tail": tail,
    }


def whole_state(data: bytes, config: StreamingConfig) -> State:
    """What ``read_chunk`` summarizes of a file of at most ``READ_PIECE`` bytes read as one chunk, from its bytes read
    whole (``data``): the many small files of a batch are read so (``execution.batch.extract_plain``)."""
    if len(data) > READ_PIECE:
        raise ValueError(f"a whole-file summary covers at most {READ_PIECE} bytes, not {len(data)}")
    digests = checksum.one_shot(config.checksum)(data) if config.checksum else None
    return _state(0, len(data), digests, data[: config.entropy_sample], data[:HEAD_BYTES], data[-TAIL_BYTES:])


def _entropy(state: State) -> float:
    """The entropy of a summary's histogram: one chunk's was worked out when it was read."""
    profile = state["profile"]
    return float(profile[0][1]) if len(profile) == 1 else entropy_bits(state["hist"])


class BinaryChunkReader(StreamChunkReader):
    """Any file as byte ranges: signatures, entropy profile, tree checksum."""

    name = "binary"
    columns = (("entropy", "float64"),)
    extensions = {".gz": "gzip", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf"}
    #: computes the checksum in its own chunk reads (no fixity wrapper: the bytes are read once)
    hashes_itself = True

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"entropy": (record.get("entropy") or {}).get("bits_per_byte")}

    def chunk_size(self, requested: int) -> int:
        # chunks start on checksum-block boundaries so every task hashes whole blocks
        return max(CHECKSUM_BLOCK, -(-requested // CHECKSUM_BLOCK) * CHECKSUM_BLOCK)

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        return ByteLayout(info.path, info.size, chunk_size, info.etag)

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        return read_chunk(spec, config)

    def merge(self, a: State, b: State) -> State:
        return {
            "blocks": {**a["blocks"], **b["blocks"]},
            "hist": a["hist"] + b["hist"],
            "profile": a["profile"] + b["profile"],
            "head": a["head"] or b["head"],
            "tail": a["tail"] or b["tail"],
        }

    def public_summary(self, state: State) -> dict[str, Any]:
        return {"entropy": _entropy(state), "profile": state["profile"]}

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        head = state["head"]
        return {
            "signature": {"format": info.format, "description": info.description, "magic_hex": head[:16].hex()},
            "trailing_signatures": trailing_signatures(state["tail"]),
            "entropy": {
                "bits_per_byte": round(_entropy(state), 6),
                "sampled_bytes": int(state["hist"].sum()),
                "profile": [[off, round(e, 4)] for off, e in sorted(state["profile"])],
            },
        }

    def record(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        """The binary section, and the file's checksum beside it (the framework's fixity key)."""
        return {**super().record(state, info, config), "checksum": file_checksum(state["blocks"], info, config.checksum)}


def file_checksum(blocks: dict[int, tuple[int, bytes]], info: FileInfo, algorithm: str | None) -> dict[str, Any]:
    """The tree checksum when the chunks read cover the whole file."""
    if not algorithm:
        return {"algorithm": None, "value": None, "note": "checksum disabled"}
    result: dict[str, Any] = {"algorithm": algorithm, "block_size": CHECKSUM_BLOCK, "scheme": checksum.describe(algorithm)}
    covered = 0
    for offset in sorted(blocks):
        if offset != covered:
            break
        covered += blocks[offset][0]
    if covered != info.size:
        result.update(value=None, note=f"partial: {len(blocks)} chunks read cover {sum(s for s, _ in blocks.values())} of {info.size} bytes")
        return result
    digests = b"".join(blocks[o][1] for o in sorted(blocks))
    result["value"] = checksum.combine(digests, algorithm)
    return result
