"""The `prep` typer app and its entry point. Commands live one per module in this package, listed in COMMANDS.

Exit codes: 0 ok, 1 failure (a PrepError), 2 usage error (bad arguments or input file), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from pipeline import __version__
from pipeline.cli import (
    build,
    canister,
    convert,
    fetch,
    inspect,
    kinds,
    lock,
    quantize,
    recipes,
    release,
    run,
    smoke,
    status,
    trim,
    tune,
    upload,
    verify,
    version,
    whoami,
)
from pipeline.cli.output import Output
from pipeline.errors import PrepError

DEBUG_ENV = "PREP_DEBUG"  # set: an unexpected exception shows its traceback

app = typer.Typer(
    name="prep",
    help="Take a language model from Hugging Face to a working LLM canister on the Internet Computer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        print(f"prep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Take a language model from Hugging Face to a working LLM canister on the Internet Computer."""


# Every command, in the order `prep --help` lists them: (name, command function or sub-app). A command
# module holds its function and options only; registering it is this one list, as huggingface_hub's cli does.
# Every command module is imported on every run (even `prep --version`), so a command module imports the
# library modules it calls (numpy, gguf, huggingface_hub, httpx, icp-py-core behind them) inside its command
# function; at module level it imports only typer, the standard library and what its option declarations
# need. tests/test_cli.py fails when a heavy module is imported at start-up.
COMMANDS: tuple[tuple[str, Callable[..., None] | typer.Typer], ...] = (
    ("version", version.version_command),
    ("recipes", recipes.recipes_app),
    ("fetch", fetch.fetch_command),
    ("build", build.build_command),
    ("convert", convert.convert_command),
    ("quantize", quantize.quantize_command),
    ("trim", trim.trim_command),
    ("inspect", inspect.inspect_command),
    ("whoami", whoami.whoami_command),
    ("canister", canister.canister_app),
    ("kinds", kinds.kinds_app),
    ("upload", upload.upload_command),
    ("smoke", smoke.smoke_command),
    ("run", run.run_command),
    ("tune", tune.tune_command),
    ("lock", lock.lock_command),
    ("release", release.release_command),
    ("verify", verify.verify_command),
    ("status", status.status_command),
)

for _name, _command in COMMANDS:
    if isinstance(_command, typer.Typer):
        app.add_typer(_command, name=_name)
    else:
        app.command(_name)(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app and maps every failure to one line on stderr and an exit code.

    Typer's standalone mode already turns usage errors into exit code 2 and Ctrl-C into exit code 130
    (we add the message); a PrepError becomes its message (and an error event with --json) and its exit
    code (1, or 2 for a bad argument or input file). Anything else is still one line, never a traceback:
    an OSError names the file and exits 1; any other exception is a bug in prep, said so with a hint
    (PREP_DEBUG=1 shows the traceback).
    """
    wants_json = "--json" in (sys.argv[1:] if argv is None else argv)
    out = Output(json=wants_json)
    try:
        app(args=argv, prog_name="prep")
    except PrepError as err:
        out.error(str(err))
        sys.exit(err.exit_code)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C into exit code 130 without a word
            out.error("interrupted: run the same command again to continue")
        raise
    except Exception as err:
        if os.environ.get(DEBUG_ENV):
            raise
        out.error(unexpected_error_message(err))
        sys.exit(1)


def unexpected_error_message(err: Exception) -> str:
    """One line (and a hint) for an exception no part of prep turned into a PrepError."""
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename is not None else ""
        return f"{where}{err.strerror or type(err).__name__}\n  hint: check that path and its permissions"
    return (
        f"unexpected {type(err).__name__}: {err}\n  hint: this is a bug in prep; run again with "
        f"{DEBUG_ENV}=1 for the traceback and report it with the command that caused it"
    )
