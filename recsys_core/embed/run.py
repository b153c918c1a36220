"""Embed every item of a dataset (or reuse the cache): `item_embeddings` for other code, `run` for
launch.py.

  python launch.py --config=configs/embed.py:amazon_beauty_minilm --workdir=runs/embed_beauty

A run writes DIR/metrics.json: the cache path and whether it hit, num_items, dim, timings
("time/load_s" weights, "time/embed_s" tokenise + compile + forward, "items_per_s") and the
anisotropy of the matrix ("anisotropy/mean_cosine", ..., see recsys_core/anisotropy.py).

Other code (ACE's initialisation, GRAM's lexical IDs) takes the matrix from an embed config:

  from configs import embed as embed_configs
  from recsys_core.embed.run import item_embeddings
  emb, meta = item_embeddings(embed_configs.get_config("amazon_beauty_minilm"), ds)  # [items, 384]
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from typing import Any, Callable, Optional

import jax
import ml_collections
import numpy as np

from recsys_core import anisotropy
from recsys_core import item_text
from recsys_core import readers
from recsys_core import records
from recsys_core.dataset import Dataset
from recsys_core.embed import cache
from recsys_core.embed import extractors
from recsys_core.embed import precomputed
from recsys_core.errors import ConfigError


def versions() -> dict[str, str]:
  """Versions of what the vectors depend on, for the metadata."""
  out = {"python": platform.python_version(), "backend": jax.default_backend()}
  for dist in ("jax", "jaxlib", "flax", "numpy", "tokenizers", "gguf", "safetensors"):
    try:
      out[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      out[dist] = "absent"
  return out


def template(config: ml_collections.ConfigDict) -> dict[str, Any]:
  out = {"fields": list(config.text_fields), "sep": config.text_sep,
         "lowercase": bool(config.lowercase), "prompt": config.prompt}
  if config.text_template != "fields":  # cache keys of the default template stay as they were
    out["text_template"] = config.text_template
  return out


def texts_to_embed(config: ml_collections.ConfigDict, ds: Dataset) -> list[str]:
  """[num_items] model inputs: each item's text (recsys_core/item_text.py) inside config.prompt."""
  if "{text}" not in config.prompt:
    raise ConfigError(f"config.prompt {config.prompt!r} lacks the '{{text}}' placeholder")
  texts = item_text.item_texts(ds, tuple(config.text_fields), config.text_sep, config.lowercase,
                               config.text_template)
  return [config.prompt.replace("{text}", t) for t in texts]


def cache_spec(config: ml_collections.ConfigDict, ds: Dataset
               ) -> tuple[list[str], dict[str, Any], str]:
  """(texts to embed, what the vectors depend on, its cache key)."""
  texts = texts_to_embed(config, ds)
  spec = {"dataset": ds.name, "num_items": ds.num_items, "texts_sha256": cache.texts_hash(texts),
          "template": template(config), **extractors.identity(config)}
  return texts, spec, cache.cache_key(spec)


def item_embeddings(config: ml_collections.ConfigDict, ds: Optional[Dataset] = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
  """([num_items, dim] float32 item embeddings, row = dense item id; metadata).

  From config.precomputed when set; else from the cache when it holds these exact item texts for
  this model / pooling; else computed with config.extractor and stored in the cache.
  `ds` defaults to config.dataset read from config.data_dir.
  """
  ds = ds if ds is not None else readers.load_dataset(config.dataset, config.data_dir)
  if config.precomputed:
    emb = precomputed.load_precomputed(config.precomputed, ds.item_ids, config.precomputed_ids,
                                       config.precomputed_key)
    return emb, {"source": "precomputed", "path": config.precomputed, "shape": list(emb.shape)}
  texts, spec, key = cache_spec(config, ds)
  if config.use_cache:
    hit = cache.load(config.cache_dir, ds.name, config.extractor, key)
    if hit is not None:
      emb, meta = hit
      return emb, {**meta, "cache": "hit", "path": cache.paths(config.cache_dir, ds.name,
                                                                config.extractor, key)[0]}
  start = time.perf_counter()
  extractor = extractors.build_extractor(config)
  loaded = time.perf_counter()
  emb = extractors.embed_texts(extractor, texts, config.batch_size, config.min_bucket,
                               config.progress)
  done = time.perf_counter()
  meta = {**spec, "dim": extractor.dim, "versions": versions(), "example_text": texts[0],
          "time/load_s": loaded - start, "time/embed_s": done - loaded,
          "items_per_s": len(texts) / (done - loaded), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
  path = cache.save(config.cache_dir, ds.name, config.extractor, key, emb, meta)
  return emb, {**meta, "key": key, "shape": list(emb.shape), "cache": "miss", "path": path}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> dict[str, Any]:
  if mode != "train":
    raise ConfigError(f"embed runs have one mode, 'train' (got --mode={mode})")
  emb, meta = item_embeddings(config)
  # Timings only when this run computed the matrix (a hit's metadata holds the original run's).
  keys = ("cache", "path", "source", "key") + (
      ("time/load_s", "time/embed_s", "items_per_s") if meta.get("cache") == "miss" else ())
  metrics = {"num_items": int(emb.shape[0]), "dim": int(emb.shape[1]),
             **{k: meta[k] for k in keys if k in meta},
             **records.prefixed("anisotropy", anisotropy.report(emb))}
  records.write_json(f"{workdir}/metrics.json", metrics)
  return metrics


def embeddings_by_name(source: str, embed: Optional[ml_collections.ConfigDict], ds: Dataset,
                       field: str, bow: Callable[[Dataset], np.ndarray]) -> np.ndarray:
  """[num_items, d] float32 item embeddings named by the config field `field` (row i = item i).

  source: "bow" (`bow(ds)`, a bag-of-words stand-in), a .npy path, or an extractor of the embedding
  cache whose settings are `embed` (configs/embed.py's <dataset>_<extractor>, attached by the
  presets); a cache miss embeds the items first.
  """
  if source == "bow":
    x = bow(ds)
  elif source.endswith(".npy"):
    x = precomputed.read_matrix(source, field=field)
  else:
    if embed is None or embed.extractor != source:
      raise ConfigError(f"{field}={source!r} is neither bow, a .npy [num_items, d] path, nor the "
                       f"extractor the preset attached ({embed and embed.extractor!r}); presets "
                       "attach minilm, smollm2, tiny_bert or tiny_llama")
    x, _ = item_embeddings(embed, ds)
  if x.ndim != 2 or x.shape[0] != ds.num_items or not np.all(np.isfinite(x)):
    raise ConfigError(f"{source}: item embeddings must be a finite [num_items={ds.num_items}, d] "
                     f"matrix (row i = item i of {ds.name}), got shape {x.shape} ({field})")
  return x.astype(np.float32)
