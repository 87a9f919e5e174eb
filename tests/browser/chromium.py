"""A headless Chromium for the browser tests, without Playwright's own download.

Playwright drives any Chromium through `executable_path`. The binary comes
from the npm package @sparticuz/chromium (`make node-deps`), which unpacks a
headless build under /tmp; CHROMIUM_PATH overrides it, and a system
`chromium` is the last resort. A browser that cannot start fails the tests
with the reason: it is never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The flags @sparticuz/chromium recommends for its build, less the ones that
# loosen web security (the tests must see the CSP and cookies as a user does)
# and --single-process (closing one browser context would end the browser).
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-setuid-sandbox",
    "--no-zygote",
    "--headless=shell",
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--font-render-hinting=none",
]
_NODE = (
    "import('@sparticuz/chromium').then(m => m.default.executablePath()).then(p => console.log(p))"
)


class NoChromium(RuntimeError):
    pass


def chromium_path() -> str:
    """The Chromium binary to launch (see the module docstring for the order)."""
    if explicit := os.environ.get("CHROMIUM_PATH"):
        if not os.access(explicit, os.X_OK):
            raise NoChromium(f"CHROMIUM_PATH={explicit} is not an executable file")
        return explicit
    reasons = []
    if (ROOT / "node_modules" / "@sparticuz" / "chromium").is_dir() and shutil.which("node"):
        run = subprocess.run(
            ["node", "-e", _NODE], cwd=ROOT, capture_output=True, text=True, timeout=180
        )
        path = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        if run.returncode == 0 and path and os.access(path, os.X_OK):
            return path
        reasons.append(f"@sparticuz/chromium: exit {run.returncode}: {run.stderr.strip()[-500:]}")
    else:
        reasons.append("@sparticuz/chromium is not installed (run `make node-deps`)")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise NoChromium(
        "no Chromium for the browser tests: "
        + "; ".join(reasons)
        + "; set CHROMIUM_PATH to a Chromium binary"
    )
