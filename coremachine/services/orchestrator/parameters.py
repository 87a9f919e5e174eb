"""Job parameters as a job type's model validates them (one parse), with
errors that name the field."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from coremachine.app import JobType
from coremachine.shared.errors import InvalidArgument


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """A one-line message naming the offending field(s), and the first field."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "parameters"
        parts.append(f"{field}: {err['msg']}")
    first = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "parameters"
    return "; ".join(parts), first


def _nul_character_at(value: object, path: str) -> str | None:
    """The path of the first string (or key) containing U+0000, if any."""
    if isinstance(value, str):
        return (path or "parameters") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            if (found := _nul_character_at(item, where)) is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _nul_character_at(item, f"{path}[{i}]")) is not None:
                return found
    return None


def validate_parameters(job_type: JobType, raw: bytes) -> dict[str, Any]:
    """The job's parameters, validated by its model, as JSON values (one parse)."""
    if raw.strip() in (b"", b"null"):
        raw = b"{}"
    if not raw.lstrip().startswith(b"{"):
        raise InvalidArgument("parameters must be a JSON object", "parameters")
    try:
        validated = job_type.parameters.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidArgument(f"parameters are not valid JSON: {exc}", "parameters") from None
        message, field = describe_validation_error(exc)
        raise InvalidArgument(message, field) from None
    parameters = validated.model_dump(mode="json")
    if (where := _nul_character_at(parameters, "")) is not None:
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here, by name.
        raise InvalidArgument(f"{where}: the NUL character (U+0000) is not allowed", where)
    return parameters
