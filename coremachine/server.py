"""`coremachine-server`: starts a service, migrates, or runs the local stack.

    coremachine-server state          the state service (migrates first unless told not to)
    coremachine-server orchestrator   the orchestrator
    coremachine-server worker         a worker (WORKER_QUEUES picks its pool)
    coremachine-server gateway        the HTTP and public gRPC gateway
    coremachine-server migrate        applies the database migrations and exits
    coremachine-server keygen ...     makes an API key (see `keygen --help`)
    coremachine-server up             the whole stack on this machine, until Ctrl-C; a process
                                      that exits is restarted (`up --help`: replicas, ports)
    coremachine-server run            the stack, one hello_world job, its result, then stop

Every service reads its settings from environment variables (README
"Configuration"); COREMACHINE_APPS names the apps the orchestrator and the
worker load.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# command -> (module whose main() runs it, arguments put before the user's)
_COMMANDS: dict[str, tuple[str, list[str]]] = {
    "state": ("coremachine.services.state.__main__", ["serve"]),
    "migrate": ("coremachine.services.state.__main__", ["migrate"]),
    "orchestrator": ("coremachine.services.orchestrator.__main__", []),
    "worker": ("coremachine.services.worker.__main__", []),
    "gateway": ("coremachine.services.api_gateway.__main__", []),
    "keygen": ("coremachine.services.api_gateway.__main__", ["keygen"]),
    "up": ("coremachine.stack.__main__", ["up"]),
    "run": ("coremachine.stack.__main__", ["run"]),
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        raise SystemExit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command not in _COMMANDS:
        print(f"unknown command {command!r}; one of: {', '.join(_COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    module_name, prefix = _COMMANDS[command]
    entry: Callable[[], object] = importlib.import_module(module_name).main
    sys.argv = [f"coremachine-server {command}", *prefix, *rest]
    result = entry()
    if isinstance(result, int):
        raise SystemExit(result)


if __name__ == "__main__":
    main()
