"""Format readers. Nothing here imports a format library at import time."""

from .base import StreamChunkReader
from .registry import available_readers, get_reader, reader_for

__all__ = ["StreamChunkReader", "available_readers", "get_reader", "reader_for"]
