"""What the pages show, computed from API bodies (pure: no I/O, no protobuf).

The pages render the same JSON bodies the HTTP API returns (convert.py), so
what a user sees in the dashboard is what a client of the API gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TERMINAL = frozenset({"completed", "completed_with_errors", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class StageBar:
    stage: int
    status: str
    queue: str
    total: int
    completed: int
    failed: int
    cancelled: int
    running: int | None  # known for the current stage only (from the diagnosis)
    waiting: int | None

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.completed - self.failed - self.cancelled)

    @property
    def done_percent(self) -> int:
        if not self.total:
            return 0
        return int(100 * (self.completed + self.failed + self.cancelled) / self.total)

    def width(self, count: int) -> str:
        return f"{100 * count / self.total:.2f}" if self.total else "0"


def stage_bars(job: dict[str, Any], diagnosis: dict[str, Any] | None) -> list[StageBar]:
    current = (diagnosis or {}).get("current_stage") or {}
    bars = []
    for s in job["stages"]:
        running = waiting = None
        if current.get("stage") == s["stage"] and current.get("planned"):
            running, waiting = int(current["processing"]), int(current["queued"])
        elif s["remaining"] == 0:
            running = waiting = 0
        bars.append(
            StageBar(
                stage=s["stage"],
                status=s["status"],
                queue=s["queue"],
                total=s["task_count"],
                completed=s["completed"],
                failed=s["failed"],
                cancelled=s["cancelled"],
                running=running,
                waiting=waiting,
            )
        )
    return bars


# -- the submit form, generated from a job type's JSON Schema ----------------------


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: str  # "string", "integer", "number", "boolean", "enum", "json"
    required: bool
    description: str
    default: str  # as the input shows it
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Follows a local $ref and unwraps the single-type anyOf pydantic writes for Optional."""
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        prop = {**schema.get("$defs", {}).get(ref.split("/")[-1], {}), **prop}
    options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        prop = {**options[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


def form_fields(schema: dict[str, Any] | None) -> list[FormField]:
    schema = schema or {}
    required = set(schema.get("required", []))
    fields = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _resolve(schema, raw)
        kind = prop.get("type")
        if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
            kind = "enum"
        elif kind not in ("string", "integer", "number", "boolean"):
            kind = "json"
        default = prop.get("default")
        if kind == "json":
            shown = json.dumps(default) if "default" in prop else ""
        elif kind == "boolean":
            shown = "true" if default else ""
        else:
            shown = "" if default is None else str(default)
        fields.append(
            FormField(
                name=name,
                label=str(prop.get("title") or name.replace("_", " ")),
                kind=kind,
                required=name in required,
                description=str(prop.get("description") or ""),
                default=shown,
                choices=tuple(prop.get("enum", ())) if kind == "enum" else (),
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
            )
        )
    return fields


class FormError(ValueError):
    """A form value that cannot be read as its field's type; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parameters_from_form(fields: list[FormField], form: dict[str, str]) -> dict[str, Any]:
    """The JSON parameters a form posted; empty optional fields are left to their defaults."""
    out: dict[str, Any] = {}
    for f in fields:
        value = form.get(f.name, "")
        if f.kind == "boolean":
            out[f.name] = value == "true"
            continue
        if value.strip() == "":
            continue  # the API applies the default, or names the missing field
        try:
            if f.kind == "integer":
                out[f.name] = int(value)
            elif f.kind == "number":
                out[f.name] = float(value)
            elif f.kind == "json":
                out[f.name] = json.loads(value)
            else:
                out[f.name] = value
        except ValueError:
            raise FormError(f.name, f"not a valid {f.kind}") from None
    return out
