"""`python -m coremachine.services.api_gateway keygen` makes a key its secret entry accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from coremachine.services.api_gateway.auth import Role, hash_key, parse_api_keys

ROOT = Path(__file__).resolve().parents[2]


def test_keygen_prints_a_key_and_the_hashed_entry_that_admits_it():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "coremachine.services.api_gateway",
            "keygen",
            "--name",
            "ci",
            "--role",
            "submitter",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    entry = json.loads(out[-1])
    assert entry["sha256"] == hash_key(key) and key not in out[-1]
    principals = parse_api_keys(json.dumps([entry]))
    [principal] = principals.values()
    assert principal.name == "ci" and principal.role == Role.SUBMITTER
