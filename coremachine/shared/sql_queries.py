"""Named SQL queries loaded from `.sql` files.

A file holds blocks introduced by `-- name: <query_name>`; the text up to the
next marker is the query. Queries use psycopg's `%(name)s` placeholders and
are never assembled from user input.
"""

from __future__ import annotations

import re
from pathlib import Path

_MARKER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class Queries:
    """Attribute access to the named queries of one `.sql` file."""

    def __init__(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        parts = _MARKER.split(text)
        # parts = [preamble, name1, body1, name2, body2, ...]
        self._queries: dict[str, str] = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in self._queries:
                raise ValueError(f"{path}: query {name!r} is defined twice")
            self._queries[name] = body.strip()
        self.path = path

    def __getattr__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"{self.path.name} has no query named {name!r}") from None

    def names(self) -> list[str]:
        """The names of every query in the file."""
        return sorted(self._queries)
