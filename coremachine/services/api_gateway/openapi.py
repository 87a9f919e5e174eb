"""The OpenAPI document, with each job type's parameter schema in it.

Job types are user code served by the orchestrators, so the document is
built per request: the routes' part once, the job types' part from
ListJobTypes (briefly, so /openapi.json answers even when no orchestrator
does). Each job type's pydantic JSON Schema becomes
`components.schemas.<job_type>.parameters`, its nested models beside it, and
the submit route lists the job types.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from typing import Any

from coremachine.orchestrator.v1 import orchestrator_pb2
from coremachine.services.api_gateway.convert import job_type_to_json

SUBMIT_PATH = "/api/jobs/submit/{job_type}"


def with_job_types(
    base: dict[str, Any], infos: Iterable[orchestrator_pb2.JobTypeInfo]
) -> dict[str, Any]:
    """A copy of the routes' document with the job types' parameter schemas added."""
    document = copy.deepcopy(base)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    listed = []
    for info in infos:
        body = job_type_to_json(info)
        schema = body["parameters_schema"]
        if not isinstance(schema, dict):
            continue
        name = f"{info.job_type}.parameters"
        schemas.update(_hoisted(schema, name, functools.partial(_nested_name, info.job_type)))
        listed.append((info.job_type, info.description, name))
    submit = document.get("paths", {}).get(SUBMIT_PATH, {}).get("post")
    if submit is not None and listed:
        lines = [
            f"- `{job_type}`: {description or 'no description'}"
            f" (parameters: `#/components/schemas/{name}`)"
            for job_type, description, name in listed
        ]
        submit["description"] = (
            submit.get("description", "") + "\n\nJob types served now:\n" + "\n".join(lines)
        )
        for parameter in submit.get("parameters", []):
            if parameter.get("name") == "job_type":
                parameter.setdefault("schema", {})["enum"] = [j for j, _, _ in listed]
    return document


def _nested_name(job_type: str, model: str) -> str:
    return f"{job_type}.{model}"


def _hoisted(
    schema: dict[str, Any], name: str, rename: Callable[[str], str]
) -> dict[str, dict[str, Any]]:
    """The schema and its `$defs`, as components with their references rewritten."""
    definitions = schema.get("$defs", {})
    out = {name: _rewritten({k: v for k, v in schema.items() if k != "$defs"}, rename)}
    for inner, definition in definitions.items():
        out[rename(inner)] = _rewritten(definition, rename)
    return out


def _rewritten(value: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith("#/$defs/"):
                out[key] = f"#/components/schemas/{rename(item.removeprefix('#/$defs/'))}"
            else:
                out[key] = _rewritten(item, rename)
        return out
    if isinstance(value, list):
        return [_rewritten(item, rename) for item in value]
    return value
