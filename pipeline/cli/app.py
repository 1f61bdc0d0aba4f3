"""The `prep` typer app and its entry point. Commands live one per module in this package.

Exit codes: 0 ok, 1 failure (a PrepError), 2 usage error (bad arguments), 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline import __version__
from pipeline.cli.output import Output
from pipeline.errors import PrepError

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


def _register_commands() -> None:
    # Each command module registers itself on `app`; importing them here keeps app.py free of logic.
    # One import per line, so that adding a command is a one-line change.
    # Every command module is imported on every run (even `prep --version`), so a command module imports
    # the library modules it calls (numpy, gguf, huggingface_hub, httpx, icp-py-core behind them) inside
    # its command function; at module level it imports only typer, the standard library and what its
    # option declarations need. tests/test_cli.py fails when a heavy module is imported at start-up.
    import pipeline.cli.build  # noqa: F401
    import pipeline.cli.canister  # noqa: F401
    import pipeline.cli.convert  # noqa: F401
    import pipeline.cli.fetch  # noqa: F401
    import pipeline.cli.inspect  # noqa: F401
    import pipeline.cli.kinds  # noqa: F401
    import pipeline.cli.lock  # noqa: F401
    import pipeline.cli.quantize  # noqa: F401
    import pipeline.cli.recipes  # noqa: F401
    import pipeline.cli.release  # noqa: F401
    import pipeline.cli.run  # noqa: F401
    import pipeline.cli.smoke  # noqa: F401
    import pipeline.cli.trim  # noqa: F401
    import pipeline.cli.tune  # noqa: F401
    import pipeline.cli.upload  # noqa: F401
    import pipeline.cli.verify  # noqa: F401
    import pipeline.cli.version  # noqa: F401
    import pipeline.cli.whoami  # noqa: F401


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app and maps failures to exit codes.

    Typer's standalone mode already turns usage errors into exit code 2 and Ctrl-C into exit code 130
    (we add the message); a PrepError becomes its message on stderr (and an error event with --json) and
    exit code 1.
    """
    wants_json = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name="prep")
    except PrepError as err:
        Output(json=wants_json).error(str(err))
        sys.exit(err.exit_code)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C into exit code 130 without a word
            Output(json=wants_json).error("interrupted: run the same command again to continue")
        raise
