"""`python -m hif validate FILE [--schema ...]`: check a stored document from the shell or CI."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

from .validate import SCHEMA_FILES, validate_hif


def read_document(path: Path) -> Any:
    """Parse `.json` or gzip-compressed `.json.gz` (what object storage holds)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hif", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="validate a HIF document; exit 1 when invalid")
    check.add_argument("file", type=Path)
    check.add_argument("--schema", choices=sorted(SCHEMA_FILES), default="v1")
    args = parser.parse_args(argv)
    try:
        doc = read_document(args.file)
    except (OSError, ValueError) as exc:
        print(f"{args.file}: cannot read JSON: {exc}", file=sys.stderr)
        return 1
    errors = validate_hif(doc, args.schema)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"{args.file}: INVALID against {args.schema} ({len(errors)} errors listed)", file=sys.stderr)
        return 1
    print(f"{args.file}: valid {args.schema}")
    return 0
