"""Configuration objects with defaults from ``dask.config``.

Defaults live in the packaged ``metaextract.yaml`` (the dask-jobqueue way), so
users change them in their dask config or environment, not in code.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any

import dask.config
from dask.utils import parse_bytes

_YAML = os.path.join(os.path.dirname(__file__), "metaextract.yaml")


def _load_defaults() -> None:
    import yaml

    with open(_YAML) as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)


_load_defaults()


def _get(name: str) -> Any:
    return dask.config.get(f"metaextract.streaming.{name}")


def _bytes(name: str) -> int:
    value = _get(name)
    return int(parse_bytes(value) if isinstance(value, str) else value)


def setting(key: str) -> Any:
    """One setting of this project from dask.config (``sandbox.memory-limit``, ``parallel.retry-limit``...).

    Every default lives in ``metaextract.yaml``; code that needs one asks
    here instead of repeating its value.
    """
    value = dask.config.get(f"metaextract.{key}")
    if key.endswith("memory-limit"):
        return int(parse_bytes(value) if isinstance(value, str) else value)
    return value


class OptionEnum(enum.Enum):
    """An enum users also name with a string ("windowed", "size-aware", ...)."""

    @classmethod
    def parse(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        text = str(value).lower().replace("-", "_")
        aliases = getattr(cls, "_aliases", {})  # set after the class: a dict in the body would be a member
        try:
            return cls(aliases.get(text, text))
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown {getattr(cls, '_label', cls.__name__)} {value!r}; choose one of {names}") from None


class StreamingStrategy(OptionEnum):
    """How a file's chunk reads are shaped into a graph (seed names)."""

    SEQUENTIAL = "sequential"  # a chain: one chunk in flight
    WINDOWED = "windowed"  # at most window_size chunk reads in flight
    SAMPLE_BASED = "sample_based"  # header, footer and sample_count chunks
    ADAPTIVE = "adaptive"  # one task, windowed or sampled by file size


StreamingStrategy._label = "strategy"  # type: ignore[attr-defined]


@dataclass
class StreamingConfig:
    """Settings for extracting one file (seed name; defaults from dask.config).

    Sizes accept ints or strings such as ``"4 MiB"``.
    """

    chunk_size: int = field(default_factory=lambda: _bytes("chunk-size"))
    strategy: StreamingStrategy = field(default_factory=lambda: StreamingStrategy.parse(_get("strategy")))
    streaming_threshold: int = field(default_factory=lambda: _bytes("streaming-threshold"))
    large_file_threshold: int = field(default_factory=lambda: _bytes("large-file-threshold"))
    window_size: int = field(default_factory=lambda: int(_get("window-size")))
    sample_count: int = field(default_factory=lambda: int(_get("sample-count")))
    max_tasks_per_file: int = field(default_factory=lambda: int(_get("max-tasks-per-file")))
    timeout: float = field(default_factory=lambda: float(_get("timeout")))
    checksum: str | None = field(default_factory=lambda: _get("checksum"))
    entropy_sample: int = field(default_factory=lambda: _bytes("entropy-sample"))
    #: kerchunk references of HDF5-based files, made while their structure is read (``readers/h5refs.py``)
    references: bool = field(default_factory=lambda: bool(_get("references")))
    #: a small PNG poster frame of each video (``readers/video.py``), kept in ``CATALOG.thumbnails/``
    thumbnails: bool = field(default_factory=lambda: bool(_get("thumbnails")))
    #: read structure and attributes only: a file's METADATA chunks (header and footer for formats without one), no
    #: statistics, no checksum (it needs every byte). A remote archive's scan then costs a few requests per file.
    metadata_only: bool = field(default_factory=lambda: bool(_get("metadata-only")))
    #: fsspec storage options for URLs (credentials, endpoint, ``anon``), passed to ``fsspec.url_to_fs``; each
    #: task builds its filesystem from them where it runs. Never written to a catalog or a log.
    storage_options: dict[str, Any] = field(default_factory=lambda: dict(dask.config.get("metaextract.storage-options", {}) or {}),
                                            repr=False)

    def __post_init__(self) -> None:
        for name in ("chunk_size", "streaming_threshold", "large_file_threshold", "entropy_sample"):
            value = getattr(self, name)
            setattr(self, name, int(parse_bytes(value) if isinstance(value, str) else value))
        self.strategy = StreamingStrategy.parse(self.strategy)
        if self.checksum in ("none", "None", "") or self.metadata_only:
            self.checksum = None
        self._validate()

    def _validate(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {self.window_size}")
        if self.sample_count < 0:
            raise ValueError(f"sample_count must be >= 0, got {self.sample_count}")
        if self.max_tasks_per_file < 3:
            raise ValueError(f"max_tasks_per_file must be at least 3, got {self.max_tasks_per_file}")
        if self.streaming_threshold > self.large_file_threshold:
            raise ValueError("streaming_threshold must not exceed large_file_threshold")
        from .checksum import ALGORITHMS

        if self.checksum is not None and self.checksum not in ALGORITHMS:
            raise ValueError(f"unknown checksum {self.checksum!r}; choose one of {', '.join(ALGORITHMS)} or none")


class LoadBalancingStrategy(OptionEnum):
    """How files are ordered and grouped onto workers (seed names)."""

    FIFO = "fifo"
    PRIORITY = "priority"
    LEAST_LOADED = "least_loaded"
    FILE_TYPE_AWARE = "file_type_aware"
    SIZE_AWARE = "size_aware"


LoadBalancingStrategy._label = "load balancing"  # type: ignore[attr-defined]


#: what HDF5_PLUGIN_PATH is set to when no folder is trusted: not a folder, and nothing can be created there
NO_PLUGINS = os.devnull


def trusted_plugin_paths() -> tuple[str, ...]:
    """``metaextract.hdf5.plugin-paths``: the only folders HDF5 filter plugins load from (``readers.guard``)."""
    return tuple(str(p) for p in dask.config.get("metaextract.hdf5.plugin-paths", []) or [])


def plugin_path_value(trusted: tuple[str, ...] | None = None) -> str:
    """What ``HDF5_PLUGIN_PATH`` must say in processes this project starts or parses in."""
    trusted = trusted_plugin_paths() if trusted is None else trusted
    return os.pathsep.join(trusted) if trusted else NO_PLUGINS
