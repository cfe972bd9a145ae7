"""Files written so that a crash never leaves half of one: the package's one atomic writer.

Every file a run folder, a dataset or the book's runner writes goes through :func:`atomic_write`:
the bytes go to a temporary file in the same folder, which then replaces the target in one
``os.replace``, so a reader sees the old file or the new one, never a torn one (a killed job
leaves at most a ``.tmp`` file behind, which the next write replaces).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "atomic_text", "atomic_json", "atomic_csv", "jsonable"]


def atomic_write(path, write) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a binary temporary file beside it, which
    then replaces ``path``; on any error the temporary file is removed and ``path`` is left as
    it was. The parent folder is created. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_text(path, text: str) -> Path:
    """:func:`atomic_write` of a text (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def jsonable(obj):
    """``obj`` with NumPy scalars and arrays as Python numbers and lists, NaN as None (JSON has
    no NaN), dict keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


def atomic_json(path, obj) -> Path:
    """:func:`atomic_write` of ``obj`` as indented JSON (through :func:`jsonable`)."""
    return atomic_text(path, json.dumps(jsonable(obj), indent=1))


def atomic_csv(path, rows: list[dict], fieldnames) -> Path:
    """:func:`atomic_write` of ``rows`` as a CSV table with the columns ``fieldnames``."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_text(path, buffer.getvalue())
