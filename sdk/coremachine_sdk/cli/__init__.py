"""The `coremachine` command line: submit, follow and inspect jobs."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from coremachine_sdk._channel import TlsOptions
from coremachine_sdk._errors import CoreMachineError
from coremachine_sdk._sync_client import Client
from coremachine_sdk.cli._commands import CLIENT_COMMANDS, LOCAL_COMMANDS, Io
from coremachine_sdk.cli._parser import UsageError, build_parser, exit_code_for

__all__ = ["main"]


def _tls(args: argparse.Namespace) -> bool | TlsOptions:
    files = {"--tls-ca": args.tls_ca, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    if not any(files.values()):
        return bool(args.tls)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    for option, path in files.items():
        if path and not Path(path).is_file():
            raise UsageError(f"{option}: no such file {path}")
    return TlsOptions(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)


def main(argv: list[str] | None = None) -> int:
    """Runs one `coremachine` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    io = Io(out=Console(), err=Console(stderr=True), json=args.json)
    try:
        if args.command in LOCAL_COMMANDS:
            return LOCAL_COMMANDS[args.command](args, io)
        with Client(args.address, api_key=args.api_key, tls=_tls(args)) as client:
            return CLIENT_COMMANDS[args.command](client, args, io)
    except (CoreMachineError, UsageError) as error:
        io.err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        field = getattr(error, "field", None)
        if field:
            io.err.print(f"  (field: {field})", highlight=False)
        return exit_code_for(error)
    except KeyboardInterrupt:
        return 130
