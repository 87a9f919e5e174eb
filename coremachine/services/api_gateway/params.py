"""Job parameters at the edge: parsed strictly and kept within size and depth limits.

Parameters are stored in the job row and travel in every stage message, so
the gateway refuses what would be expensive downstream before anything is
created. The orchestrator still validates them against the job type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from coremachine.shared.domain.names import JOB_TYPE_PATTERN
from coremachine.shared.errors import InvalidArgument

__all__ = ["JOB_TYPE_PATTERN", "ParameterLimits", "check_parameters", "parse_parameters"]


@dataclass(frozen=True, slots=True)
class ParameterLimits:
    max_bytes: int = 65_536
    max_depth: int = 20


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def parse_parameters(body: bytes, limits: ParameterLimits, field: str = "body") -> dict[str, Any]:
    """A JSON object of parameters from a request body; an empty body is `{}`."""
    if len(body) > limits.max_bytes:
        raise InvalidArgument(f"{field}: parameters exceed {limits.max_bytes} bytes", field)
    if not body.strip():
        return {}
    try:
        # NaN and Infinity are not JSON; accepting them would store values
        # that other JSON parsers (and PostgreSQL's jsonb) refuse.
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidArgument(
            f"{field}: parameters nest deeper than {limits.max_depth} levels", field
        ) from None
    except ValueError as exc:
        raise InvalidArgument(f"{field}: body is not valid JSON: {exc}", field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field}: body must be a JSON object of parameters", field)
    check_parameters(value, limits, field)
    return value


def check_parameters(value: dict[str, Any], limits: ParameterLimits, field: str) -> None:
    """Raises InvalidArgument when parameters nest too deep, are too big or hold NaN."""
    if nesting_depth(value) > limits.max_depth:
        raise InvalidArgument(
            f"{field}: parameters nest deeper than {limits.max_depth} levels", field
        )
    try:
        encoded = json.dumps(value, allow_nan=False)
    except ValueError:
        raise InvalidArgument(f"{field}: parameters must not hold NaN or Infinity", field) from None
    if len(encoded.encode()) > limits.max_bytes:
        raise InvalidArgument(f"{field}: parameters exceed {limits.max_bytes} bytes", field)


def nesting_depth(value: Any) -> int:
    """Depth of nested objects and arrays (a scalar is 0, `{}` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest
