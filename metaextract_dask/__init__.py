"""metaextract_dask: metadata from large HDF5, NetCDF, video and binary files on Dask.

Importing this package imports no format library (h5py, netCDF4, ffmpeg);
readers import theirs when first used.
"""

from .core.checksum import reference_checksum
from .core.errors import (
    CorruptFileError,
    EmptyFileError,
    ExtractionError,
    ExtractionTimeout,
    FileAccessError,
    FileChangedError,
    MetaExtractError,
    ParserCrashError,
    UnsupportedFormatError,
)
from .core.model import ChunkSpec, ChunkType, ExtractionResult, ExtractionTask, FileInfo, StreamChunk
from .core.settings import StreamingConfig, StreamingStrategy
from .readers.base import StreamChunkReader
from .readers.binary import BinaryChunkReader
from .readers.probe import probe

__version__ = "0.1.0"

# Imported on first use, not at package import.
_LAZY = {
    "StreamingExtractor": "metaextract_dask.execution.api",
    "StreamingMetrics": "metaextract_dask.execution.api",
    "extract_file": "metaextract_dask.execution.api",
    "extract_with_streaming": "metaextract_dask.execution.api",
    "ExecutionModel": "metaextract_dask.execution.cluster",
    "LoadBalancingStrategy": "metaextract_dask.core.settings",
    "ParallelExtractionConfig": "metaextract_dask.execution.api",
    "ParallelExtractor": "metaextract_dask.execution.api",
    "extract_files_parallel": "metaextract_dask.execution.api",
    "extract_files": "metaextract_dask.execution.api",
    "ParallelMetrics": "metaextract_dask.diagnostics.stats",
    "extract_metadata": "metaextract_dask.execution.batch",
    "scan": "metaextract_dask.scanning",
    "scan_iter": "metaextract_dask.scanning",
    "read_catalog": "metaextract_dask.catalog",
    "query_catalog": "metaextract_dask.catalog",
    "read_variables": "metaextract_dask.catalog",
    "report": "metaextract_dask.catalog.report",
    "open": "metaextract_dask.catalog.opening",
    "open_catalog": "metaextract_dask.catalog.opening",
    "export": "metaextract_dask.catalog.exports",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metaextract_dask' has no attribute {name!r}")

__all__ = [
    "BinaryChunkReader",
    "ChunkSpec",
    "ChunkType",
    "CorruptFileError",
    "EmptyFileError",
    "ExecutionModel",
    "ExtractionError",
    "ExtractionResult",
    "ExtractionTask",
    "ExtractionTimeout",
    "FileAccessError",
    "FileChangedError",
    "FileInfo",
    "LoadBalancingStrategy",
    "MetaExtractError",
    "ParallelExtractionConfig",
    "ParallelExtractor",
    "ParallelMetrics",
    "ParserCrashError",
    "StreamChunk",
    "StreamChunkReader",
    "StreamingConfig",
    "StreamingExtractor",
    "StreamingMetrics",
    "StreamingStrategy",
    "UnsupportedFormatError",
    "extract_file",
    "extract_files",
    "extract_files_parallel",
    "extract_metadata",
    "extract_with_streaming",
    "export",
    "open",
    "open_catalog",
    "probe",
    "query_catalog",
    "read_catalog",
    "read_variables",
    "reference_checksum",
    "report",
    "scan",
    "scan_iter",
]
