"""A whole-file checksum that chunk tasks compute in parallel.

The file is cut into blocks of ``CHECKSUM_BLOCK`` (1 MiB) bytes, the last one
possibly shorter. Each block is hashed; the checksum is the hash of the
concatenated block digests, in file order. Chunk boundaries always fall on
block boundaries, so every chunk task hashes its own blocks and the value does
not depend on chunk size, strategy or the order tasks ran in.

Reference computation (what ``reference_checksum`` does)::

    import hashlib
    digests = b""
    with open(path, "rb") as f:
        while block := f.read(1048576):
            digests += hashlib.sha256(block).digest()
    print(hashlib.sha256(digests).hexdigest())

For ``sha256`` the same value from standard tools (GNU coreutils and xxd)::

    split -b 1048576 --filter='sha256sum' FILE | cut -d' ' -f1 | xxd -r -p | sha256sum

For ``xxh3_128`` (the default, about 20 GB/s per core) use ``xxhash.xxh3_128``
in the recipe above, or ``xxhsum -H2`` in place of ``sha256sum``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

#: the checksum is computed over blocks of this many bytes (the module's docstring says how).
#: 1 MiB, not 64 KiB: xxhash releases the GIL only for inputs above 64 KiB,
#: so with 1 MiB blocks two threads hash at once (benchmarks/RESULTS.md).
CHECKSUM_BLOCK = 1024 * 1024


def _xxh3_128(data: bytes = b"") -> Any:
    import xxhash

    return xxhash.xxh3_128(data)


def one_shot(algorithm: str) -> Callable[[memoryview | bytes], bytes]:
    """A function from bytes to digest; xxhash's one-shot form skips the object."""
    if algorithm == "xxh3_128":
        import xxhash

        return xxhash.xxh3_128_digest
    new = ALGORITHMS[algorithm]
    return lambda block: new(block).digest()


ALGORITHMS: dict[str, Callable[..., Any]] = {
    "xxh3_128": _xxh3_128,
    "sha256": hashlib.sha256,
    "blake2b": hashlib.blake2b,
}


def block_digests(data: memoryview | bytes, algorithm: str) -> bytes:
    """Digests of each CHECKSUM_BLOCK-sized block of ``data``, concatenated."""
    digest = one_shot(algorithm)
    view = memoryview(data)
    return b"".join([digest(view[i : i + CHECKSUM_BLOCK]) for i in range(0, len(view), CHECKSUM_BLOCK)])


def combine(digests: bytes, algorithm: str) -> str:
    """The file checksum from all block digests in file order."""
    return str(ALGORITHMS[algorithm](digests).hexdigest())


def describe(algorithm: str) -> str:
    """The name stored in metadata: says exactly how to recompute it."""
    return f"{algorithm} of {algorithm} digests of {CHECKSUM_BLOCK}-byte blocks"


def reference_checksum(path: str, algorithm: str = "xxh3_128") -> str:
    """Serial computation of the documented checksum, for verification."""
    new = ALGORITHMS[algorithm]
    digests = bytearray()
    with open(path, "rb") as f:
        while block := f.read(CHECKSUM_BLOCK):
            digests += new(block).digest()
    return combine(bytes(digests), algorithm)
