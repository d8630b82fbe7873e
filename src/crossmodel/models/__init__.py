"""crossmodel.models: load LLMs (zoo name | HF dir | GGUF file | hub id) and the zoo of registry-shipped models."""

from crossmodel.models.gguf import convert_gguf, load_gguf
from crossmodel.models.load import LoadedModel, Source, load_model, load_tokenizer, model_fingerprint, resolve, slug
from crossmodel.models.fetch import fetch_gguf, is_pulled, pull, verify_dir
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE, PLAIN_PROMPT, chat_prompt, chat_template_of, render
from crossmodel.models.text import generate_text
from crossmodel.models.zoo import ZOO, Part, ZooEntry, zoo_dir, zoo_entry

__all__ = ["PLAIN_CHAT_TEMPLATE", "PLAIN_PROMPT", "ZOO", "LoadedModel", "Part", "Source", "ZooEntry",
           "chat_prompt", "chat_template_of", "convert_gguf", "fetch_gguf", "generate_text", "is_pulled",
           "load_gguf", "load_model", "load_tokenizer", "model_fingerprint", "pull", "render", "resolve", "slug",
           "verify_dir", "zoo_dir", "zoo_entry"]
