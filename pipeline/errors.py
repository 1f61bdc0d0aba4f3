"""Errors that reach the user: each carries a message that says what is wrong and what to do."""

from __future__ import annotations


class PrepError(Exception):
    """A failure the user can act on. `str(err)` is the whole user-facing message.

    The CLI prints the message to stderr and exits with `exit_code` (1 = failure).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class UsageError(PrepError):
    """Bad arguments or a bad input file given by the user (exit code 2)."""

    exit_code = 2


class InvalidFile(UsageError):
    """A file given to prep (a model, tokenizer, config, checkpoint folder, key) is not what its format
    requires: a bad input file, exit code 2 like any other bad input."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "check that it is the file you meant (prep inspect FILE shows what a model file holds); "
            "if it is damaged, fetch, convert or export it again",
        )
