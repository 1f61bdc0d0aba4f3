"""The file formats prep knows, by the names profiles and `prep inspect` use (no parser imported here)."""

GGUF = "gguf"
SAFETENSORS = "safetensors"
LLAMA2C_MODEL = "llama2c-model"
LLAMA2C_TOKENIZER = "llama2c-tokenizer"
TOKENIZER_JSON = "tokenizer-json"
GPT2_CONFIG = "gpt2-config"
DESCRIPTIONS = {
    GGUF: "a GGUF model",
    SAFETENSORS: "a safetensors file",
    LLAMA2C_MODEL: "a llama2.c model.bin",
    LLAMA2C_TOKENIZER: "a llama2.c tokenizer.bin",
    TOKENIZER_JSON: "a Hugging Face tokenizer.json",
    GPT2_CONFIG: "a GPT-2 config.json",
}
