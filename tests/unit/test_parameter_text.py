"""Parameters PostgreSQL could not store are found, with the path to the value."""

from __future__ import annotations

from coremachine.services.orchestrator.parameters import _nul_character_at


def test_finds_nul_characters_in_nested_values_and_keys():
    assert _nul_character_at({"a": "ok", "b": [1, "x\x00"]}, "") == "b[1]"
    assert _nul_character_at({"a": {"c\x00": 1}}, "") == "a.c\x00"
    assert _nul_character_at({"a": ["fine", {"b": None}]}, "") is None
