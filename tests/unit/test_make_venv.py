"""tools/make_venv.sh: the virtualenv `make deps` creates, also where python3
has no venv support yet (a fresh Debian or Ubuntu)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "make_venv.sh"


def test_a_venv_with_pip_is_created(tmp_path: Path):
    proc = subprocess.run(
        [str(SCRIPT), str(tmp_path / "venv")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "venv" / "bin" / "pip").exists()


def test_without_venv_support_and_apt_get_it_says_what_to_install(tmp_path: Path):
    # A python3 whose `-m venv` fails (no ensurepip), on a PATH without apt-get.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(
        '#!/bin/bash\nif [ "$1" = "-m" ]; then echo "ensurepip is not available" >&2; exit 1; fi\n'
        "echo 3.12\n"
    )
    fake.chmod(0o755)
    for tool in ("bash", "id", "rm", "env"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "venv")],
        env={"PATH": str(bin_dir), "PYTHON": "python3"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "apt-get install python3.12-venv" in proc.stderr
    assert "ensurepip is not available" in proc.stderr  # Python's own message too
    assert not (tmp_path / "venv").exists()
