"""A TOML table being validated: every key read is checked, every key left over is reported unknown.

Errors name the file, the dotted key, what was expected and what was found; `hint` says where the
schema is written down (the recipe's or the fleet file's README section).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import UsageError


class TomlTable:
    """A TOML table being validated: tracks which keys were read so the rest can be reported as unknown."""

    def __init__(self, file: Path, prefix: str, data: Any, hint: str) -> None:
        self.file = file
        self.hint = hint
        self.prefix = prefix
        if not isinstance(data, dict):
            raise self.error(prefix or "(top level)", "a table", data)
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, dotted: str, expected: str, got: Any = None, *, missing: bool = False) -> UsageError:
        found = "it is missing" if missing else f"got {got!r}"
        return UsageError(f"{self.file}: `{dotted}` must be {expected}; {found}", hint=self.hint)

    def get(self, name: str, expected: str, check: Any, default: Any = ..., *, required: bool = True) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is not ...:
                return default
            raise self.error(self.key(name), expected, missing=True)
        value = self.data[name]
        if not check(value):
            raise self.error(self.key(name), expected, value)
        return value

    def string(self, name: str, default: Any = ...) -> Any:
        return self.get(name, "a non-empty string", lambda v: isinstance(v, str) and v.strip() != "", default)

    def choice(self, name: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        return self.get(name, "one of " + ", ".join(choices), lambda v: v in choices, default)

    def positive_int(self, name: str, default: Any = ...) -> Any:
        return self.get(name, "a positive integer", is_positive_int, default)

    def string_list(self, name: str) -> tuple[str, ...]:
        value = self.get(name, "a non-empty list of non-empty strings", is_string_list)
        return tuple(value)

    def sub(self, name: str) -> TomlTable:
        self.seen.add(name)
        if name not in self.data:
            raise self.error(self.key(name), "a table", missing=True)
        return TomlTable(self.file, self.key(name), self.data[name], self.hint)

    def optional_sub(self, name: str) -> TomlTable | None:
        self.seen.add(name)
        return self.sub(name) if name in self.data else None

    def string_map(self, name: str) -> dict[str, str]:
        table = self.sub(name)
        result = {k: table.string(k) for k in table.data}
        if not result:
            raise table.error(table.prefix, 'a non-empty table of name = "string"', {})
        return result

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            raise UsageError(
                f"{self.file}: unknown key `{self.key(unknown[0])}`",
                hint=f"allowed keys here: {allowed}",
            )


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_string_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)
