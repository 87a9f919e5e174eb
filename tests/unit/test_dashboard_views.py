"""The dashboard's pure parts: the form generated from a JSON Schema, stage bars, and
the session cookie."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from coremachine.builtin.hello_world import parameters_model
from coremachine.services.api_gateway.ui.session import SessionCodec, csrf_matches
from coremachine.services.api_gateway.ui.views import (
    FormError,
    form_fields,
    parameters_from_form,
    stage_bars,
)


class Mixed(BaseModel):
    name: str
    mode: str = Field("fast", json_schema_extra={"enum": ["fast", "slow"]})
    count: int | None = Field(None, ge=1, le=9)
    ratio: float = 0.5
    verbose: bool = False
    tags: list[str] = ["a"]


def test_every_json_schema_type_becomes_a_labelled_field_with_its_bounds():
    fields = {f.name: f for f in form_fields(Mixed.model_json_schema())}
    assert {n: f.kind for n, f in fields.items()} == {
        "name": "string",
        "mode": "enum",
        "count": "integer",
        "ratio": "number",
        "verbose": "boolean",
        "tags": "json",
    }
    assert fields["name"].required and not fields["ratio"].required
    assert fields["count"].minimum == 1 and fields["count"].maximum == 9
    assert fields["mode"].choices == ("fast", "slow") and fields["mode"].default == "fast"
    assert fields["tags"].default == '["a"]'
    assert all(f.label for f in fields.values())


def test_form_values_become_typed_parameters_and_empty_ones_are_left_to_defaults():
    fields = form_fields(Mixed.model_json_schema())
    form = {"name": "x", "mode": "slow", "count": "", "ratio": "0.25", "tags": '["b", "c"]'}
    assert parameters_from_form(fields, form) == {
        "name": "x",
        "mode": "slow",
        "ratio": 0.25,
        "verbose": False,  # an unchecked box is not sent
        "tags": ["b", "c"],
    }
    with pytest.raises(FormError) as raised:
        parameters_from_form(fields, {**form, "count": "three"})
    assert raised.value.field == "count"
    with pytest.raises(FormError):
        parameters_from_form(fields, {**form, "tags": "[not json"})


def test_the_hello_world_form_round_trips_through_its_own_model():
    schema = parameters_model(100).model_json_schema()
    fields = form_fields(schema)
    values = {f.name: f.default for f in fields}
    parameters = parameters_from_form(fields, {**values, "n": "7"})
    assert parameters_model(100).model_validate(parameters).n == 7


def test_running_and_waiting_come_from_the_diagnosis_of_the_current_stage():
    job = {
        "stages": [
            {"stage": 1, "status": "completed", "queue": "tasks", "task_count": 4,
             "completed": 4, "failed": 0, "cancelled": 0, "remaining": 0},
            {"stage": 2, "status": "processing", "queue": "tasks", "task_count": 10,
             "completed": 3, "failed": 1, "cancelled": 0, "remaining": 6},
        ]
    }  # fmt: skip
    diagnosis = {"current_stage": {"stage": 2, "planned": True, "processing": 2, "queued": 4}}
    first, second = stage_bars(job, diagnosis)
    assert (first.done_percent, first.running, first.waiting) == (100, 0, 0)
    assert (second.done_percent, second.running, second.waiting) == (40, 2, 4)
    assert second.width(3) == "30.00"


def test_a_session_opens_only_with_its_own_secret_and_hides_the_key():
    codec = SessionCodec("secret-1")
    session = codec.new("the-api-key")
    sealed = codec.seal(session)
    assert "the-api-key" not in sealed
    assert codec.open(sealed) == session
    assert SessionCodec("secret-2").open(sealed) is None
    assert codec.open(sealed[:-2] + "xx") is None
    assert codec.open("") is None and codec.open("x" * 5000) is None
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, "") and not csrf_matches(session, session.csrf + "x")
    assert codec.new("k").csrf != codec.new("k").csrf
