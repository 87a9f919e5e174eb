"""Every named SQL query is loaded and used: no dead or missing SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coremachine.shared.sql_queries import Queries

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    ROOT / "coremachine/services/state/queries.sql": ROOT / "coremachine/services/state",
    ROOT / "coremachine/shared/brokers/postgres_sql/queries.sql": ROOT
    / "coremachine/shared/brokers",
}


@pytest.mark.parametrize("sql_file", list(FILES), ids=lambda p: p.parent.name)
def test_every_named_query_is_used_by_code(sql_file: Path):
    queries = Queries(sql_file)
    code = "\n".join(p.read_text() for p in FILES[sql_file].rglob("*.py"))
    used = set(re.findall(r"\b_?Q\.(\w+)", code))
    assert set(queries.names()) - used == set(), "queries nobody runs"
    assert used - set(queries.names()) == set(), "queries the code runs that do not exist"


def test_a_query_defined_twice_is_refused(tmp_path: Path):
    path = tmp_path / "q.sql"
    path.write_text("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="defined twice"):
        Queries(path)
