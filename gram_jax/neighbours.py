"""GRAM's collaborative neighbours: each item's top-k items by cosine of SASRec item embeddings.

Official (preprocessing/2_collaborative_semantics_verbalization.ipynb): a trained SASRec's item
embedding table, rows L2-normalised (norm clamped at 1e-8), cosine similarity of all pairs, the
item itself excluded, the 20 most similar kept (`similar_item_sasrec.txt`); the fine prompts use
the first k of them. The official table still has RecBole's padding row 0, which can then appear as
a "neighbour"; we rank real items only. Sources: our own SASRec run (`seqrec`, its best orbax
checkpoint) or the authors' released file.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from recsys_core.checkpoint import Checkpoints
from recsys_core.dataset import DataError, Dataset
from recsys_core.errors import ConfigError, MissingFileError
from recsys_core import train
from gram_jax.id_files import read_neighbour_file


@functools.partial(jax.jit, static_argnames=("k",))
def _block_top_k(block: jax.Array, start: jax.Array, table: jax.Array, k: int) -> jax.Array:
  """[b, k] indices of the top-k cosine neighbours of rows start..start+b (self excluded)."""
  sims = block @ table.T
  rows = start + jnp.arange(block.shape[0])
  sims = sims.at[jnp.arange(block.shape[0]), rows].set(-jnp.inf)
  return jax.lax.top_k(sims, k)[1]


def cosine_top_k(table: np.ndarray, k: int, block_size: int = 1024) -> np.ndarray:
  """[num_items, k] int32: each row's k most cosine-similar other rows, most similar first.

  Args:
    table: [num_items, d] float item embeddings (row i = dense item i).
  """
  table = np.asarray(table, np.float32)
  n = len(table)
  if not 1 <= k < n:
    raise ConfigError(f"top-k neighbours need 1 <= k < num_items; got k={k}, {n} items "
                      "(config.num_neighbours)")
  unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-8)
  unit_dev = jnp.asarray(unit)
  out = np.zeros((n, k), np.int32)
  block_size = min(block_size, n)
  for start in range(0, n, block_size):
    block = unit[start:start + block_size]
    real = len(block)
    if real < block_size:  # pad the last block: one compilation
      block = np.concatenate([block, np.zeros((block_size - real, unit.shape[1]), np.float32)])
    idx = _block_top_k(jnp.asarray(block), jnp.int32(start), unit_dev, k)
    out[start:start + real] = np.asarray(idx)[:real]
  return out


def sasrec_item_table(run_dir: str, num_items: int) -> np.ndarray:
  """[num_items, hidden] float32 item embeddings of the best checkpoint of a seqrec run.

  The run's `config.json` rebuilds the model and optimizer the checkpoint was saved with;
  SASRec's padding row 0 is dropped (row i = dense item i).
  """
  from seqrec import run as seqrec_run  # pylint: disable=g-import-not-at-top
  from seqrec import sasrec  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(config_path) or not os.path.isdir(os.path.join(run_dir, "checkpoints")):
    raise MissingFileError(f"{run_dir}: not a trained SASRec run (needs config.json and "
                           "checkpoints/); train one with configs/sasrec.py first")
  try:
    with open(config_path, "rb") as f:
      config = json.loads(f.read())
  except ValueError as e:  # bad JSON or bad UTF-8
    raise DataError(f"{config_path}: not a readable config.json ({e})") from None
  if not isinstance(config, dict) or config.get("family") != "sasrec":
    family = config.get("family") if isinstance(config, dict) else None
    raise DataError(f"{config_path}: family {family!r}, expected 'sasrec'; point "
                    "config.neighbours at a SASRec run")
  config = ml_collections.ConfigDict(config)
  model = seqrec_run.build_model(config, num_items)
  # Shapes only (no initialisation is computed): the restore target.
  target = jax.eval_shape(lambda: train.create_state(
      sasrec.init_params(model, config.seed), seqrec_run.build_optimizer(config), config.seed))
  checkpoints = Checkpoints(run_dir)
  try:
    state, _ = checkpoints.restore("best", target)
  finally:
    checkpoints.close()
  # rows 1..num_items: the padding row 0 (and a BERT4Rec run's mask row, last) dropped
  return np.asarray(state.params["item_embedding"]["embedding"], np.float32)[1:num_items + 1]


def load_neighbours(source: str, ds: Dataset, data_dir: str, k: int) -> np.ndarray:
  """[num_items, k] int32 neighbours of `ds`'s items.

  source: "authors": `<data_dir>/<dataset>/similar_item_sasrec.txt`; "sasrec:<run_dir>": top-k by
    cosine of that SASRec run's item embeddings.
  """
  if source == "authors":
    path = os.path.join(data_dir, ds.name, "similar_item_sasrec.txt")
    return read_neighbour_file(path, ds.item_ids, k)
  if source.startswith("sasrec:"):
    return cosine_top_k(sasrec_item_table(source[len("sasrec:"):], ds.num_items), k)
  raise ConfigError(f"neighbour source {source!r} (config.neighbours): use 'authors' or "
                    "'sasrec:<run_dir>'")
