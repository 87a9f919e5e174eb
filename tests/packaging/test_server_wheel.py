"""The server installs as a package: wheels of the SDK and the server, into a
fresh virtual environment, run `coremachine-server` and load the built-in app
through its entry point, with nothing from this checkout on the path."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib.metadata as md, json
import coremachine.app, coremachine.services.state.store, coremachine.testing
from coremachine.app._registry import load_registry
from coremachine.jobs.v1 import jobs_pb2
from coremachine.state.v1 import state_pb2
import coremachine_sdk
registry = load_registry(None)
print(json.dumps({
    "files": [m.__file__ for m in (coremachine.app, jobs_pb2, state_pb2, coremachine_sdk)],
    "job_types": registry.names(),
    "requires_sdk": [r for r in md.requires("coremachine") if r.startswith("coremachine-sdk")],
    "sql": __import__("importlib.resources").resources.files("coremachine.services.state")
        .joinpath("migrations/0001_core_schema.sql").is_file(),
    "ui": [__import__("importlib.resources").resources.files("coremachine.services.api_gateway.ui")
        .joinpath(f).is_file() for f in ("templates/job.html", "static/dashboard.js",
        "static/dashboard.css")],
}))
"""


def test_the_wheels_install_and_run_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(ROOT / "sdk"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert [n.split("-")[0] for n in built] == ["coremachine", "coremachine_sdk"], built

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This environment's pip installs the two wheels into the new venv; the
    # third-party dependencies come from this environment (a .pth), not a download.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            *[str(p) for p in wheels.glob("*.whl")],
        ],
        check=True,
        capture_output=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_deps_from_test_env.pth").write_text(
        "\n".join(p for p in site.getsitepackages()) + "\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COREMACHINE_APPS")}
    found = json.loads(
        subprocess.run(
            [str(python), "-c", CHECK],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert all(f.startswith(str(venv)) for f in found["files"]), found["files"]
    assert found["job_types"] == [
        "diamond",
        "hello_world",
        "list_container_contents",
        "noop",
        "summarize_container",
    ]
    assert found["requires_sdk"] and found["sql"]
    assert found["ui"] == [True, True, True], "the dashboard's templates and static files"
    helped = subprocess.run(
        [str(venv / "bin" / "coremachine-server"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert helped.returncode == 0 and "coremachine-server worker" in helped.stdout
