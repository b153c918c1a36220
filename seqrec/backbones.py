"""The sequential backbones behind seqrec/run.py, chosen by config.backbone.

  sasrec    seqrec/sasrec.py    causal Transformer, next-item CE (the default)
  gru4rec   seqrec/gru4rec.py   GRU, next-item CE
  bert4rec  seqrec/bert4rec.py  bidirectional Transformer, cloze CE (examples: seqrec/cloze.py)

Each model exposes the same interface to the runner, the initialisers and the checkpoints:
`scores(item_seq)` -> [batch, num_items + 1] (column 0 = padding), `table()` -> the item table
(rows 1..num_items = items), an `item_table` module hook, and its item table at the parameter path
("item_embedding", "embedding") when it has no hook.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from recsys_core.dataset import Dataset
from recsys_core.errors import ConfigError
from seqrec import bert4rec
from seqrec import cloze
from seqrec import data as data_lib
from seqrec import gru4rec
from seqrec import sasrec

BACKBONES = ("sasrec", "gru4rec", "bert4rec")


def name(config: ml_collections.ConfigDict) -> str:
  """config.backbone, checked (configs saved before the field existed are SASRec runs)."""
  backbone = config.get("backbone", "sasrec")
  if backbone not in BACKBONES:
    raise ConfigError(f"config.backbone={backbone!r}: use one of {', '.join(BACKBONES)}")
  return backbone


def table_rows(config: ml_collections.ConfigDict, num_items: int) -> int:
  """Rows of the backbone's item table: padding + items (+ BERT4Rec's mask row)."""
  return num_items + (2 if name(config) == "bert4rec" else 1)


def build_model(config: ml_collections.ConfigDict, num_items: int,
                item_table_module: Optional[nn.Module] = None) -> nn.Module:
  """The config's backbone; item_table_module: an initialiser's table module or None."""
  m, backbone = config.model, name(config)
  if backbone == "gru4rec":
    return gru4rec.GRU4Rec(num_items=num_items, max_len=config.max_len, hidden=m.hidden,
                           gru_hidden=m.gru_hidden, num_layers=m.gru_layers, dropout=m.dropout,
                           item_table=item_table_module)
  common = dict(num_items=num_items, max_len=config.max_len, hidden=m.hidden, inner=m.inner,
                num_layers=m.num_layers, num_heads=m.num_heads, dropout=m.dropout,
                attention_dropout=m.attention_dropout, layer_norm_eps=m.layer_norm_eps,
                init_std=m.init_std, item_table=item_table_module)
  if backbone == "bert4rec":
    return bert4rec.BERT4Rec(**common)
  return sasrec.SASRec(score_temperature=m.score_temperature, **common)


def init_params(model: nn.Module, seed: int, item_table: Optional[np.ndarray] = None) -> Any:
  """Parameters of `model` (its RecBole init), rows 1..num_items of the item table optionally
  replaced by `item_table` [num_items, hidden] (padding and mask rows keep their init)."""
  if isinstance(model, sasrec.SASRec):
    return sasrec.init_params(model, seed, item_table)
  dummy = np.zeros((1, model.max_len), np.int32)
  params = _jitted_init(model)(jax.random.PRNGKey(seed), dummy)["params"]
  if item_table is None:
    return params
  item_table = np.asarray(item_table, np.float32)
  if item_table.shape != (model.num_items, model.hidden):
    raise ValueError(f"item_table has shape {item_table.shape}, expected "
                     f"({model.num_items}, {model.hidden}) = (num_items, hidden)")
  params = jax.tree.map(lambda x: x, params)  # a copy we may edit
  table = params["item_embedding"]["embedding"]
  params["item_embedding"]["embedding"] = table.at[1:model.num_items + 1].set(item_table)
  return params


@functools.lru_cache(maxsize=8)
def _jitted_init(model: nn.Module) -> Callable:
  """jax.jit(model.init), one per model (modules hash by their fields): compiled once."""
  return jax.jit(model.init)


def loss_fn(model: nn.Module) -> Callable:
  """(params, batch, rng) -> (loss, aux) for `recsys_core.train.make_train_step`."""
  loss = {sasrec.SASRec: sasrec.ce_loss, gru4rec.GRU4Rec: gru4rec.ce_loss,
          bert4rec.BERT4Rec: bert4rec.cloze_loss}[type(model)]
  return lambda params, batch, rng: loss(model, params, batch, rng)


def train_batches(config: ml_collections.ConfigDict, ds: Dataset):
  """Epochs of training batches: next-item examples (`seqrec.data.Batches`), or BERT4Rec's cloze
  batches (`seqrec.cloze.ClozeBatches`); `.examples` has the number of examples as its len."""
  if name(config) != "bert4rec":
    return data_lib.Batches(data_lib.train_examples(ds, config.max_len, config.train_prefixes),
                            config.batch_size, config.seed, config.pack_multiple)
  m = config.model
  windows = cloze.cloze_windows(ds, config.max_len, m.cloze_windows, config.train_prefixes)
  return cloze.ClozeBatches(windows, config.batch_size, config.seed, ds.num_items + 1,
                            m.mask_ratio, m.ft_ratio, config.pack_multiple)
