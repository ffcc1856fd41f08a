"""metaextract_dask: metadata from large HDF5, NetCDF, video and binary files on Dask.

Importing this package imports no format library (h5py, netCDF4, ffmpeg);
readers import theirs when first used.
"""

from .config import StreamingConfig, StreamingStrategy
from .errors import (
    CorruptFileError,
    EmptyFileError,
    ExtractionError,
    ExtractionTimeout,
    FileAccessError,
    FileChangedError,
    MetaExtractError,
    UnsupportedFormatError,
)
from .model import ChunkSpec, ChunkType, ExtractionResult, ExtractionTask, FileInfo, StreamChunk
from .probe import probe
from .readers.base import StreamChunkReader
from .readers.binary import BinaryChunkReader
from .streaming import StreamingExtractor, StreamingMetrics, extract_file, extract_with_streaming
from .checksum import reference_checksum

__version__ = "0.1.0"

__all__ = [
    "BinaryChunkReader",
    "ChunkSpec",
    "ChunkType",
    "CorruptFileError",
    "EmptyFileError",
    "ExtractionError",
    "ExtractionResult",
    "ExtractionTask",
    "ExtractionTimeout",
    "FileAccessError",
    "FileChangedError",
    "FileInfo",
    "MetaExtractError",
    "StreamChunk",
    "StreamChunkReader",
    "StreamingConfig",
    "StreamingExtractor",
    "StreamingMetrics",
    "StreamingStrategy",
    "UnsupportedFormatError",
    "extract_file",
    "extract_with_streaming",
    "probe",
    "reference_checksum",
]
