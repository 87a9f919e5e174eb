"""The resolved model of Compose files, built offline without docker-compose.

What `docker compose config` does that the deploy tests rely on: each file is
checked against the Compose Specification's JSON Schema (the copy in
schemas/compose-spec.schema.json is the one docker-compose 1.29.2 validates
with), `${VAR:-default}` is interpolated, override files are merged into the
first one, services outside the active profiles are dropped, short syntaxes
are expanded (ports, depends_on, environment, build) and relative paths are
resolved against the project directory (the first file's folder). References
to services that do not exist are refused, as `config` refuses them.

Written here rather than installed because no maintained Python package does
it: docker-compose 1.x is unmaintained and pins PyYAML < 6, and Compose v2 is
a Go binary that needs Docker's CLI plugin layout.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\})"
)

# Keys whose values are lists that an override file appends to (not replaces).
_APPENDED = {"ports", "volumes", "expose", "dns", "extra_hosts"}


class ComposeError(ValueError):
    """The files do not form a valid Compose project."""


def load_compose(
    files: Sequence[Path],
    *,
    validate: Callable[[Any, str], None],
    profiles: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The merged, resolved model of `files` (first = base, the rest overrides).

    `validate(instance, schema_name)` checks a document against a JSON Schema
    (the deploy tests pass their jsonschema helper).
    """
    env = dict(os.environ if environ is None else environ)
    project_dir = files[0].resolve().parent
    merged: dict[str, Any] = {}
    for path in files:
        import yaml

        document = yaml.safe_load(path.read_text()) or {}
        document = _interpolate(document, env, str(path))
        validate(document, "compose-spec")
        merged = _merge(merged, document)
    model = {k: v for k, v in merged.items() if not str(k).startswith("x-")}
    services = model.get("services") or {}
    active = set(profiles)
    model["services"] = {
        name: _normalize_service(name, service, project_dir)
        for name, service in services.items()
        if not service.get("profiles") or active & set(service["profiles"])
    }
    _check_references(model)
    return model


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, where) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise ComposeError(f"{where}: required variable {name} is not set: {arg}")
            return str(current)
        if arg:
            raise ComposeError(f"{where}: invalid interpolation {match.group(0)!r}")
        return "" if current is None else str(current)

    return _VARIABLE.sub(substitute, value)


def _merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if key in _APPENDED and isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    if key in ("environment", "depends_on"):
        return _merge(_as_mapping(key, base), _as_mapping(key, override))
    return copy.deepcopy(override)


def _as_mapping(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if key == "environment":
        pairs = (str(item).split("=", 1) for item in value or [])
        return {p[0]: (p[1] if len(p) > 1 else None) for p in pairs}
    return {str(name): {"condition": "service_started"} for name in value or []}


def _normalize_service(name: str, service: dict[str, Any], project_dir: Path) -> dict[str, Any]:
    out = dict(service)
    if "environment" in out:
        out["environment"] = {
            k: ("" if v is None else str(v))
            for k, v in _as_mapping("environment", out["environment"]).items()
        }
    if "depends_on" in out:
        out["depends_on"] = _as_mapping("depends_on", out["depends_on"])
    if "build" in out:
        build = out["build"] if isinstance(out["build"], dict) else {"context": out["build"]}
        build = {"dockerfile": "Dockerfile", **build}
        build["context"] = str((project_dir / build.get("context", ".")).resolve())
        out["build"] = build
    if "ports" in out:
        out["ports"] = [_port(name, p) for p in out["ports"]]
    if "volumes" in out:
        out["volumes"] = [_volume(v, project_dir) for v in out["volumes"]]
    return out


def _port(service: str, port: Any) -> dict[str, Any]:
    if isinstance(port, dict):
        return {"protocol": "tcp", **port}
    text, _, protocol = str(port).partition("/")
    parts = text.split(":")
    if len(parts) == 1:
        return {"target": int(parts[0]), "protocol": protocol or "tcp"}
    if len(parts) in (2, 3):
        published, target = parts[-2], parts[-1]
        return {"published": published, "target": int(target), "protocol": protocol or "tcp"}
    raise ComposeError(f"service {service}: cannot read port {port!r}")


def _volume(volume: Any, project_dir: Path) -> Any:
    if isinstance(volume, dict):
        return volume
    source, _, rest = str(volume).partition(":")
    if source.startswith((".", "/", "~")):
        resolved = (project_dir / Path(source).expanduser()).resolve()
        return f"{resolved}:{rest}" if rest else str(resolved)
    return volume


def _check_references(model: dict[str, Any]) -> None:
    services = model["services"]
    named_volumes = set(model.get("volumes") or {})
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                raise ComposeError(f"service {name} depends on undefined service {dependency}")
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            if source and not source.startswith("/") and source not in named_volumes:
                raise ComposeError(f"service {name} refers to undefined volume {source}")
