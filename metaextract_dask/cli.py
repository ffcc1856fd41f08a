"""The ``metaextract`` command line.

Exit status: 0 success, 1 some files failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .config import StreamingConfig, StreamingStrategy
from .errors import MetaExtractError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _human(record: dict[str, Any], indent: int = 0) -> str:
    """An indented, readable rendering of a metadata record."""
    pad = "  " * indent
    lines = []
    for key, value in record.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_human(value, indent + 1))
        elif isinstance(value, list) and len(value) > 8:
            lines.append(f"{pad}{key}: [{len(value)} items] {json.dumps(value[:3], default=str)[:-1]}, ...]")
        else:
            lines.append(f"{pad}{key}: {json.dumps(value, default=str) if isinstance(value, list) else value}")
    return "\n".join(lines)


def _streaming_options(parser: argparse.ArgumentParser) -> None:
    strategies = [s.value for s in StreamingStrategy]
    parser.add_argument("--strategy", choices=strategies, help="streaming strategy (default: adaptive)")
    parser.add_argument("--chunk-size", help="bytes per chunk read, e.g. 4MiB (default: 1MiB)")
    parser.add_argument("--checksum", help="xxh3_128 (default), sha256, blake2b or none")
    parser.add_argument("--timeout", type=float, help="seconds allowed per file (default: 300)")


def _config(args: argparse.Namespace) -> StreamingConfig:
    given = {k: getattr(args, k) for k in ("strategy", "chunk_size", "checksum", "timeout") if getattr(args, k, None) is not None}
    return StreamingConfig(**given)


def cmd_info(args: argparse.Namespace) -> int:
    """Print one file's metadata."""
    from .streaming import extract_file

    try:
        record, _ = extract_file(args.file, _config(args))
    except MetaExtractError as exc:
        print(f"metaextract: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(record, indent=2, default=str) if args.json else _human(record))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaextract", description="Metadata from large scientific, video and binary files, on Dask.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print one file's metadata")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="machine-readable JSON")
    _streaming_options(info)
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    except ValueError as exc:  # bad option values found when building the config
        print(f"metaextract: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
