"""The state service's named queries, loaded once."""

from __future__ import annotations

from pathlib import Path

from coremachine.shared.sql_queries import Queries

Q = Queries(Path(__file__).with_name("queries.sql"))
