"""Batch parameters as one JSON document, expanded by jsonb_to_recordset.

Passing a batch as a single JSON string is much cheaper than psycopg's
per-element array adaptation (json.dumps is C code; PostgreSQL parses it in
one go), which matters on the per-task hot paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

_dumps = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode


def records(rows: Iterable[Mapping[str, Any]]) -> str:
    """A JSON array of objects."""
    return _dumps(rows if isinstance(rows, list) else list(rows))


def records_with_raw(rows: Iterable[tuple[Mapping[str, Any], str]], raw_key: str) -> str:
    """Like records(), with one field taken verbatim from already-encoded JSON text.

    Avoids decoding and re-encoding payloads (task parameters, results) that
    arrive as JSON text. Each mapping must be non-empty.
    """
    key = _dumps(raw_key)
    return "[" + ",".join(f"{_dumps(row)[:-1]},{key}:{raw}}}" for row, raw in rows) + "]"


def values(items: Iterable[Any]) -> str:
    """A JSON array of scalars (for `IN (SELECT jsonb_array_elements_text(...))`)."""
    return _dumps(list(items))
