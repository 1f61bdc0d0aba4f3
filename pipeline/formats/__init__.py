"""Readers and validators of the model file formats: GGUF, safetensors, llama2.c, tokenizer.json."""
