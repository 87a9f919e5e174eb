"""`pip install ./sdk` gives a self-contained SDK: the generated modules come along."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib.metadata, json, sys
import coremachine_sdk
from coremachine.jobs.v1 import jobs_pb2_grpc
from coremachine.common.v1 import common_pb2
requires = importlib.metadata.requires("coremachine-sdk")
print(json.dumps({
    "sdk": coremachine_sdk.__file__,
    "gen": jobs_pb2_grpc.__file__,
    "requires": sorted(r.split(">")[0].split("=")[0].strip() for r in requires),
    "client": coremachine_sdk.Client.__name__,
}))
"""


def test_the_sdk_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This environment's pip installs into the new venv (fast: no pip bootstrap);
    # --no-deps and a .pth to this environment's site-packages stand in for
    # downloading grpcio/protobuf/rich again. Neither the SDK nor the generated
    # `coremachine` package is installed here (they come through PYTHONPATH),
    # so the imports below can only succeed from what the wheel put in the venv.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(ROOT / "sdk"),
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
    (Path(purelib) / "_deps_from_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    checked = subprocess.run(
        [str(python), "-c", CHECK],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(checked.stdout)
    assert found["sdk"].startswith(str(venv)) and found["gen"].startswith(str(venv))
    assert found["requires"] == ["grpcio", "protobuf", "rich"]

    helped = subprocess.run(
        [str(venv / "bin" / "coremachine"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert helped.returncode == 0, helped.stderr
    assert "submit" in helped.stdout and "exit codes" in helped.stdout
