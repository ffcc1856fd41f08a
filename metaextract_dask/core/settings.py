"""Configuration objects with defaults from ``dask.config``.

Defaults live in the packaged ``metaextract.yaml`` (the dask-jobqueue way), so
users change them in their dask config or environment, not in code.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any

_YAML = os.path.join(os.path.dirname(__file__), "metaextract.yaml")

#: settings that are sizes in bytes ("4 GiB" or an int): read as ints, and handed to sandbox children as ints
SIZES = ("streaming.chunk-size", "streaming.streaming-threshold", "streaming.large-file-threshold", "streaming.entropy-sample",
         "remote.block-size", "archives.ratio-above", "archives.max-member-size", "sandbox.memory-limit")

#: the environment variable that hands a sandbox child its parent's whole ``metaextract`` section (``handed_section``)
HANDED_VARIABLE = "METAEXTRACT_SETTINGS"


def _from_parent() -> dict[str, Any] | None:
    """The section a parent handed this process (a sandbox child), or None: read dask.config. A child so handed its
    settings never imports dask for them (0.2 s of every child's start, on the first file's clock)."""
    text = os.environ.get(HANDED_VARIABLE)
    if not text:
        return None
    import ast

    try:
        section = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return section if isinstance(section, dict) else None


_HANDED = _from_parent()
#: this project's defaults (the packaged ``metaextract.yaml``), once read
_DEFAULTS: dict[str, Any] = {}


def _dask_config() -> Any:
    """``dask.config`` with this project's defaults, added on first use (importing the package imports no dask: an
    export or a query needs none); added again where a ``dask.config.set`` block, entered before they first were,
    took them away when it ended (and a later block set one key of them alone)."""
    import dask.config

    if not _DEFAULTS:
        import yaml

        with open(_YAML) as f:
            _DEFAULTS.update(yaml.safe_load(f))
        dask.config.update_defaults(_DEFAULTS)
    elif _lacks(dask.config.config, _DEFAULTS):  # a second such block made a section of its own key alone
        dask.config.update(dask.config.config, _DEFAULTS, priority="old")
    return dask.config


def _lacks(config: Any, defaults: dict[str, Any]) -> bool:
    """Whether ``config`` misses a key of ``defaults``, at any depth (a key in either spelling, ``-`` or ``_``, is there)."""
    from dask.config import canonical_name

    for key, value in defaults.items():
        found = canonical_name(key, config)
        if found not in config:
            return True
        if isinstance(value, dict) and (not isinstance(config[found], dict) or _lacks(config[found], value)):
            return True
    return False


def _lookup(section: dict[str, Any], key: str, default: Any) -> Any:
    """``key`` ("a.b-c") in a handed section, as dask.config finds it (either of ``-`` and ``_`` in a name)."""
    node: Any = section
    for part in key.split("."):
        if not isinstance(node, dict):
            return default
        for name in (part, part.replace("-", "_"), part.replace("_", "-")):
            if name in node:
                node = node[name]
                break
        else:
            return default
    return node


def config_get(key: str, default: Any = None) -> Any:
    """``metaextract.<key>`` as configured: dask.config (the user's files and ``DASK_METAEXTRACT__...`` variables over
    the packaged defaults), or in a sandbox child the section its parent handed it."""
    if _HANDED is not None:
        return _lookup(_HANDED, key, default)
    return _dask_config().get(f"metaextract.{key}", default)


def parse_size(value: Any) -> int:
    """A size in bytes from an int or a string such as ``"4 GiB"`` (dask's ``parse_bytes``)."""
    if isinstance(value, str):
        from dask.utils import parse_bytes

        return int(parse_bytes(value))
    return int(value)


def handed_section() -> dict[str, Any]:
    """This process's whole ``metaextract`` section as a sandbox child is handed it: sizes already ints (the child
    then needs neither dask.config nor dask's size parser)."""
    import copy

    section = copy.deepcopy(_HANDED) if _HANDED is not None else copy.deepcopy(dict(_dask_config().get("metaextract", {})))
    for key in SIZES:
        *parents, last = key.split(".")
        node: Any = section
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] is not None:
            node[last] = parse_size(node[last])
    return section


def _get(name: str) -> Any:
    return config_get(f"streaming.{name}")


def _bytes(name: str) -> int:
    return parse_size(_get(name))


def setting(key: str) -> Any:
    """One setting of this project (``sandbox.memory-limit``, ``parallel.retry-limit``...): sizes (``SIZES``) as ints.

    Every default lives in ``metaextract.yaml``; code that needs one asks
    here instead of repeating its value.
    """
    value = config_get(key)
    return parse_size(value) if key in SIZES and value is not None else value


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
    storage_options: dict[str, Any] = field(default_factory=lambda: dict(config_get("storage-options", {}) or {}),
                                            repr=False)

    def __post_init__(self) -> None:
        for name in ("chunk_size", "streaming_threshold", "large_file_threshold", "entropy_sample"):
            value = getattr(self, name)
            setattr(self, name, parse_size(value))
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
    return tuple(str(p) for p in config_get("hdf5.plugin-paths", []) or [])


def plugin_path_value(trusted: tuple[str, ...] | None = None) -> str:
    """What ``HDF5_PLUGIN_PATH`` must say in processes this project starts or parses in."""
    trusted = trusted_plugin_paths() if trusted is None else trusted
    return os.pathsep.join(trusted) if trusted else NO_PLUGINS


#: libnetcdf (4.10 in netCDF4's wheel) reads ``.ncrc``, ``.daprc`` and ``.dodsrc`` in the working folder when it
#: starts, and loads the plugin libraries they name (``NETCDF.UDF0.LIBRARY``): a scan run inside the scanned tree
#: (``cd data && metaextract scan .``) ran a library the tree held. With this set it reads no such file (this project
#: reads remote files through fsspec, never through libnetcdf's DAP, whose settings they hold).
NETCDF_NO_RC = {"NCRCENV_IGNORE": "1"}


def native_environment(trusted: tuple[str, ...] | None = None) -> dict[str, str]:
    """What the environment must say before a native library (libhdf5, libnetcdf) loads in a process this project
    starts or parses in: filter plugins only from the ``trusted`` folders (by default the configured ones), no
    libnetcdf configuration file (``NETCDF_NO_RC``). Each library reads it once, when it loads."""
    return {"HDF5_PLUGIN_PATH": plugin_path_value(trusted), **NETCDF_NO_RC}
