"""The smoke prompt, rendered from the model's own chat template (a Jinja template, as transformers uses).

Templates come from the model repo, so they run in Jinja's immutable sandbox. The rendering mirrors
transformers' apply_chat_template (trim_blocks, lstrip_blocks, loop controls, raise_exception, a tojson that
keeps non-ASCII) with two deliberate differences:
- bos_token is empty: llama.cpp adds BOS itself when it tokenizes the prompt, so a rendered BOS would be
  a second one;
- no strftime_now: templates then use their built-in date, so the same repo always gives the same recipe.
enable_thinking=False asks hybrid reasoning models (Qwen3) for a direct answer, as llama_cpp_canister's
README runs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

SMOKE_QUESTION = "Name one colour of the sky."
# Without a chat template the model is asked to complete a sentence instead.
PLAIN_PROMPT = "The colour of the sky is"


@dataclass(frozen=True)
class SmokePrompt:
    text: str
    source: str  # where the template came from, or why there was none


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def render_smoke_prompt(template: str | None, source: str, *, eos_token: str = "") -> SmokePrompt:
    """The smoke question rendered by `template` (from `source`), or a plain prompt when that fails."""
    if not template:
        return SmokePrompt(PLAIN_PROMPT, f"plain completion prompt ({source})")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    try:
        text = env.from_string(template).render(
            messages=[{"role": "user", "content": SMOKE_QUESTION}],
            add_generation_prompt=True,
            bos_token="",
            eos_token=eos_token,
            enable_thinking=False,
        )
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError, RecursionError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return SmokePrompt(
            PLAIN_PROMPT, f"plain completion prompt: the chat template in {source} failed: {reason}"
        )
    if SMOKE_QUESTION not in text:
        return SmokePrompt(
            PLAIN_PROMPT, f"plain completion prompt: the chat template in {source} drops the question"
        )
    return SmokePrompt(text, f"chat template from {source}")


def template_from_tokenizer_config(config: dict[str, Any]) -> str | None:
    """`chat_template` of a tokenizer_config.json: a string, or a list of named templates ("default")."""
    value = config.get("chat_template")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        chosen = named.get("default")
        return chosen if isinstance(chosen, str) else None
    return None


def special_token(config: dict[str, Any], key: str) -> str:
    """bos_token / eos_token of a tokenizer_config.json: a string or an AddedToken dict."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""
