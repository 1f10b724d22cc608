"""Measure one throughput cell in this process and print its result as one line of JSON.

    python -m benchmarks.one_cell CELL_JSON SETTINGS_JSON

``CELL_JSON`` holds the fields of ``benchmarks.timing.Cell`` and ``SETTINGS_JSON`` those of its
``Settings``. The throughput benchmark measures its headline cell so, in several fresh processes one
after another: on a shared machine one process's speed can differ from the next one's by a quarter,
more than its own passes differ from each other, so a single process is one draw of that spread.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, fields
from typing import Any

from benchmarks.timing import Cell, EnvBench, Settings


def settings_from_json(text: str) -> Settings:
    """``Settings`` from its JSON fields (lists back to tuples); unknown fields are an error."""
    values: dict[str, Any] = json.loads(text)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown Settings fields {unknown}; expected names from {sorted(known)}")
    return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    cell, settings = Cell(**json.loads(argv[0])), settings_from_json(argv[1])
    result = asdict(EnvBench(settings, log=lambda line: None)(cell))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
