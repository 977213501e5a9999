"""The `changeseg` command: a group of verbs, each a thin module in this package.

Verbs are imported lazily so `changeseg --help` stays fast and a verb's heavy imports
(torch, Lightning, FastAPI) are paid only when it runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from changeseg import __version__
from changeseg.errors import ChangesegError
from changeseg.io.native import quiet_native_output

# verb -> module under changeseg.cli holding a click command named `command`
VERBS: dict[str, str] = {
    "detect": "detect",
    "evaluate": "evaluate",
    "export": "export",
    "info": "info",
    "synth": "synth",
    "train": "train",
    "finetune": "finetune",
    "serve": "serve",
}


class LazyGroup(click.Group):
    """A click group that imports each verb's module only when that verb is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module = importlib.import_module(f"changeseg.cli.{VERBS[name]}")
        return module.command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="changeseg")
def cli() -> None:
    """Find what changed between a reference image and a comparison image."""


def run_command(command: click.Command, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run a click command and map every user-facing failure to one stderr line and an exit code.

    Set CHANGESEG_DEBUG=1 to see full tracebacks for unexpected errors. Native libraries'
    warnings while decoding or encoding images are kept off the terminal.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    quiet_native_output(True)  # libpng / OpenCV warnings stay off the terminal (changeseg.io.native)
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except ChangesegError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("CHANGESEG_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set CHANGESEG_DEBUG=1 for a traceback)",
                   err=True)
        return 3
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `changeseg` console script; returns the process exit code."""
    code = run_command(cli, argv, "changeseg")
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
