"""Train (mode 'train') or evaluate the best checkpoint (mode 'eval') of GRAM under leave-one-out.

Pipeline: dataset -> item text -> (ours) item embeddings, a SentencePiece tokenizer trained on the
item text and hierarchical lexical IDs named with its pieces, or (authors) the released ID file ->
the ID words added to the tokenizer -> neighbours -> per-item token tables -> a T5 with late
fusion trained by the shared step and loop -> trie-constrained beam search -> Recall/NDCG@k over
the beam's items (one target per user: Recall@k = hit@k).

Writes into the workdir:
  gram_data.json  what the dataset-dependent files below were built from; a later launch reuses the
                  files and refuses a config that would build different ones
  spiece.model    the trained tokenizer (tokenizer.kind "trained")
  ids.txt         our lexical IDs in the authors' format (ids.source "ours")
  metrics.jsonl   one line per validation ("step", "epoch", "train/loss", "valid/ndcg@10", ...)
  checkpoints/    orbax: latest/ and best/ (recsys_core/checkpoint.py)
  test_per_user.npz  the best checkpoint's per-user test metrics ("recall@10": [num_test_users],
                  ..., "user": their dense user ids) for paired comparisons between runs
  metrics.json    final: "test/recall@5", "test/ndcg@10", ... of the best checkpoint, its "valid/..."
                  metrics (on the validation sample when config.valid_users > 0: "valid/num_users"),
                  "best/epoch", "time/...", data and model sizes
  eval.json       (mode 'eval') the metrics of the best checkpoint, recomputed, and its per-user
                  test metrics in eval_test_per_user.npz
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.sparse as sp
import tqdm

from recsys_core import evaluation
from recsys_core import item_text
from recsys_core import loop
from recsys_core import metrics as metrics_lib
from recsys_core import readers
from recsys_core import records
from recsys_core import train
from recsys_core.checkpoint import Checkpoints
from recsys_core.dataset import Dataset
from gram_jax import batching
from gram_jax import beam_search
from gram_jax import data as data_lib
from gram_jax import hf_convert
from gram_jax import id_files
from gram_jax import lexical_ids
from gram_jax import loss
from gram_jax import neighbours as neighbours_lib
from gram_jax import prompts
from gram_jax import t5
from gram_jax import tokenizer as tokenizer_lib
from gram_jax.trie import build_trie
from recsys_core.errors import ConfigError

ID_SOURCES = ("ours", "authors")
_MODEL_OVERRIDES = ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads")


# --- dataset-dependent files --------------------------------------------------------------------

def texts_of(ds: Dataset) -> list[str]:
  """[num_items] lower-cased item text (empty strings for a dataset without item text)."""
  return item_text.item_texts(ds, lowercase=True) if ds.item_text else [""] * ds.num_items


def data_spec(config: ml_collections.ConfigDict, ds: Dataset, texts: list[str]) -> dict:
  """What the workdir's tokenizer and IDs depend on (compared on every launch)."""
  digest = hashlib.sha256("\n".join(list(ds.item_ids) + texts).encode()).hexdigest()[:16]
  spec = {"dataset": ds.name, "num_items": ds.num_items, "items_and_texts_sha256": digest,
          "tokenizer.kind": config.tokenizer.kind, "tokenizer.path": config.tokenizer.path,
          "ids.source": config.ids.source}
  if config.tokenizer.kind == "trained":
    spec["tokenizer.vocab_size"] = config.tokenizer.vocab_size
  if config.ids.source == "ours":
    spec.update({f"ids.{k}": config.ids[k] for k in ("embeddings", "num_clusters", "depth", "seed",
                                                      "num_restarts")})
    if config.ids.embeddings == "bow":
      spec["ids.bow_dims"] = config.ids.bow_dims
  return spec


def check_spec(path: str, spec: dict) -> None:
  """Write `spec` to `path`, or check it equals the one there (one line naming the first change)."""
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    for key in sorted(set(stored) | set(spec)):
      if stored.get(key) != spec.get(key):
        raise ConfigError(
            f"{path}: this workdir's tokenizer/IDs were built with {key}={stored.get(key)!r} but "
            f"the config gives {spec.get(key)!r}; use a new --workdir for a different setting")
  else:
    records.write_json(path, spec)


def id_embeddings(config: ml_collections.ConfigDict, ds: Dataset) -> np.ndarray:
  """[num_items, d] item embeddings to cluster: config.ids.embeddings (bow | PATH.npy | an
  extractor of recsys_core/embed, whose settings are config.ids.embed)."""
  from recsys_core.embed import run as embed_run  # pylint: disable=import-outside-toplevel
  from seqrec import initialisers  # pylint: disable=import-outside-toplevel
  return embed_run.embeddings_by_name(
      config.ids.embeddings, config.ids.get("embed"), ds, "config.ids.embeddings",
      lambda d: initialisers.bag_of_words_embeddings(d, config.ids.bow_dims, config.ids.seed))

def tokenizer_and_ids(config: ml_collections.ConfigDict, ds: Dataset, texts: list[str],
                      workdir: str) -> tuple:
  """(tokenizer holding every ID word, [num_items] lexical IDs, path of the ID file), built into
  the workdir on the first launch and read back on later ones."""
  if config.ids.source not in ID_SOURCES:
    raise ConfigError(f"config.ids.source={config.ids.source!r}: use one of {', '.join(ID_SOURCES)}")
  check_spec(os.path.join(workdir, "gram_data.json"), data_spec(config, ds, texts))
  if config.ids.source == "authors":
    id_path = id_files.authors_id_path(os.path.join(config.data_dir, ds.name))
  else:
    id_path = os.path.join(workdir, "ids.txt")
  kind = config.tokenizer.kind
  tok_path = os.path.join(workdir, "spiece.model") if kind == "trained" else config.tokenizer.path
  tokenizer = tokenizer_lib.get_tokenizer(kind, tok_path, prompts.tokenizer_corpus(texts),
                                          config.tokenizer.vocab_size)
  if os.path.exists(id_path):
    ids = id_files.read_id_file(id_path, ds.item_ids)
  else:  # every process builds the same IDs (seeded); process 0 writes them
    start = time.perf_counter()
    ids = lexical_ids.build_lexical_ids(
        id_embeddings(config, ds), texts, tokenizer, config.ids.num_clusters, config.ids.depth,
        config.ids.seed, num_restarts=config.ids.num_restarts)
    id_files.write_id_file(id_path, ds.item_ids, ids)
    logging.info("built lexical IDs in %.0f s: %s", time.perf_counter() - start, id_path)
  if config.ids.shuffle:  # the "random IDs" ablation: same words and trie, no semantics
    order = np.random.default_rng([config.ids.seed, 2]).permutation(len(ids))
    ids = [ids[i] for i in order]
  tokenizer = tokenizer.with_words(w for words in ids for w in words)
  if (tokenizer.pad_id, tokenizer.eos_id) != (0, 1):
    raise ConfigError(f"{tokenizer.source}: pad/eos ids are {tokenizer.pad_id}/{tokenizer.eos_id}; "
                     "T5 needs pad 0 and eos 1")
  return tokenizer, ids, id_path


def item_neighbours(config: ml_collections.ConfigDict, ds: Dataset) -> Any:
  """[num_items, k] neighbours of the fine prompts, or None (k = 0 or no source)."""
  if not config.num_neighbours or not config.item_prompts:
    return None
  if not config.neighbours:
    raise ConfigError(f"config.num_neighbours={config.num_neighbours} but config.neighbours is "
                     "empty: set 'authors', 'sasrec:RUN_DIR', or num_neighbours=0")
  return neighbours_lib.load_neighbours(config.neighbours, ds, config.data_dir,
                                        config.num_neighbours)


# --- model and optimizer ------------------------------------------------------------------------

def num_prompt_positions(config: ml_collections.ConfigDict) -> int:
  return 1 + config.num_fine if config.item_prompts else 1


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> tuple:
  """(T5 with late fusion, initial params): from config.model.size (+ overrides) from scratch, or a
  Hugging Face checkpoint (prompt-position table initialised)."""
  m = config.model
  positions = num_prompt_positions(config)
  if m.hf_checkpoint:
    t5_config, params = hf_convert.load_checkpoint(m.hf_checkpoint, positions, config.seed)
    if not m.prompt_positions:
      params = {k: v for k, v in params.items() if k != "prompt_position"}
    if vocab_size > t5_config.vocab_size:
      raise ConfigError(f"{m.hf_checkpoint}: its vocabulary has {t5_config.vocab_size} ids but the "
                       f"tokenizer needs {vocab_size}; use the checkpoint's own tokenizer "
                       "(config.tokenizer.kind=sentencepiece, path=.../spiece.model)")
    if config.tokenizer.kind == "trained":
      logging.warning("model.hf_checkpoint with our trained tokenizer: the pretrained embeddings "
                      "belong to the checkpoint's vocabulary; use its spiece.model")
    model = t5.T5(dataclasses.replace(t5_config, dropout_rate=m.dropout_rate,
                                      prompt_position_embedding=m.prompt_positions,
                                      dtype=m.dtype))
    return model, jax.tree.map(jnp.asarray, params)
  overrides = {k: m[k] for k in _MODEL_OVERRIDES if m[k]}
  model = t5.T5(t5.t5_config(m.size, vocab_size=vocab_size, num_prompt_positions=positions,
                             dropout_rate=m.dropout_rate, dtype=m.dtype,
                             prompt_position_embedding=m.prompt_positions, **overrides))
  return model, t5.init_params(model, config.seed)


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int):
  """Linear warmup over warmup_fraction of total_steps, then linear decay to 0 at total_steps
  (Hugging Face's get_linear_schedule_with_warmup, as the official code uses)."""
  warmup = int(total_steps * config.warmup_fraction)
  peak = config.learning_rate

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    up = step / max(warmup, 1)
    down = jnp.maximum(0.0, (total_steps - step) / max(total_steps - warmup, 1))
    return peak * jnp.where(step < warmup, up, down)
  return schedule


def build_optimizer(config: ml_collections.ConfigDict, total_steps: int
                    ) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW with the schedule (weight decay on every weight: T5 has no
  biases, and the official no-decay names never match T5's layer norms)."""
  return optax.chain(
      optax.clip_by_global_norm(config.clip_norm),
      optax.adamw(learning_rate_schedule(config, total_steps), b1=0.9, b2=0.999,
                  eps=config.adam_eps, weight_decay=config.weight_decay))


def cutoffs(config: ml_collections.ConfigDict) -> tuple:
  """The cut-offs k of config.ks that the beam can fill (k <= num_beams)."""
  ks = tuple(k for k in config.ks if k <= config.num_beams)
  if not ks:
    raise ConfigError(f"config.ks={tuple(config.ks)}: none is <= num_beams={config.num_beams}")
  keys = [f"valid/{m}@{k}" for m in ("recall", "ndcg") for k in ks]
  if config.early_stop_metric not in keys:
    raise ConfigError(f"config.early_stop_metric={config.early_stop_metric!r} is not computed with "
                     f"ks={ks} and num_beams={config.num_beams}; use one of {keys}")
  return ks


# --- evaluation ---------------------------------------------------------------------------------

def eval_examples(config: ml_collections.ConfigDict, ds: Dataset, tables: data_lib.GramTables,
                  which: str) -> data_lib.GramExamples:
  """The valid/test examples; valid ones cut to a fixed seeded sample of config.valid_users."""
  examples = data_lib.eval_examples(ds, tables, which, config.max_his, config.item_prompts)
  if which == "valid" and 0 < config.valid_users < len(examples):
    keep = np.sort(np.random.default_rng([config.seed, 1]).choice(
        len(examples), config.valid_users, replace=False))
    ex = examples.examples
    examples = dataclasses.replace(
        examples, users=examples.users[keep],
        examples=dataclasses.replace(ex, targets=ex.targets[keep], lengths=ex.lengths[keep]))
  return examples


class Evaluator(evaluation.PerUserEvaluator):
  """Recall/NDCG@k of the beam search's items on one evaluation set."""

  def __init__(self, config, search_fn, trie, examples: data_lib.GramExamples, which: str,
               mesh=None, per_user_path: str | None = None):
    """search_fn: (params, trie, input_ids) -> (items, scores), the jit-compiled
    `beam_search.constrained_beam_search`; share one between evaluators.
    per_user_path: if given, each call also writes the per-example metrics there (.npz, with
    "user": the dense user of each example)."""
    super().__init__(which, per_user_path)
    self.config, self.search_fn, self.trie, self.examples, self.mesh = (
        config, search_fn, trie, examples, mesh)
    n = len(examples)
    target = examples.examples.items[examples.examples.targets]
    self.target = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), target)),
                                shape=(n, examples.tables.labels.shape[0]))

  def top_items(self, params: Any) -> np.ndarray:
    """[num_examples, num_beams] int32 decoded items, best first (-1: empty slot)."""
    c = self.config
    batch_size = evaluation.round_to_mesh(c.eval_batch_size, self.mesh)
    batches = ((index, (input_ids,)) for index, input_ids in batching.eval_batches(
        self.examples, batch_size, c.num_fine, c.prompt_buckets, c.distinct_prompts,
        self.mesh.size if self.mesh is not None else 1))
    search = lambda p, input_ids: self.search_fn(p, self.trie, input_ids)[0]
    out = np.full((len(self.examples), c.num_beams), -1, np.int32)
    with tqdm.tqdm(total=len(self.examples), desc=self.which, unit="user",
                   disable=not c.progress) as bar:
      for index, items in evaluation.pipelined(search, params, batches, self.mesh):
        out[index] = items[:len(index)]
        bar.update(len(index))
    return out

  def per_user(self, params: Any) -> dict:
    return metrics_lib.grouped_ranking_metrics(self.top_items(params), self.target,
                                               cutoffs(self.config), "size")

  def per_user_extras(self) -> dict:
    return {"user": self.examples.users}


def prompt_tables(config: ml_collections.ConfigDict, ds: Dataset, workdir: str) -> tuple:
  """(tokenizer, ids, the ID file's path, the GramTables of every item's prompts) of a run: the
  tokenizer and IDs of `workdir` (built there first when it has none)."""
  texts = texts_of(ds)
  tokenizer, ids, id_path = tokenizer_and_ids(config, ds, texts, workdir)
  neighbours = item_neighbours(config, ds)
  tables = data_lib.build_tables(ids, texts, tokenizer, neighbours,
                                 config.num_neighbours if neighbours is not None else 0,
                                 config.prompt_len)
  return tokenizer, ids, id_path, tables


# --- the run ------------------------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> dict:
  if mode not in ("train", "eval"):
    raise ConfigError(f"mode={mode!r}: GRAM supports --mode=train and --mode=eval")
  start = time.perf_counter()
  cutoffs(config)
  ds = readers.load_dataset(config.dataset, config.data_dir)
  tokenizer, ids, id_path, tables = prompt_tables(config, ds, workdir)
  trie = build_trie([tokenizer.word_ids(w) for w in ids], tokenizer.eos_id, tokenizer.pad_id,
                    tokenizer.vocab_size).device()
  model, params = build_model(config, tokenizer.vocab_size)
  examples = data_lib.train_examples(ds, tables, config.max_his, config.item_prompts)
  batches = batching.PromptBatches(
      examples, config.batch_size, config.seed, config.num_fine, config.prompt_buckets,
      config.group_prefixes, config.distinct_prompts,
      num_groups=config.num_devices or jax.device_count())  # one group per device of the mesh
  total_steps = config.epochs * batches.num_batches
  if config.num_train_steps:
    total_steps = min(total_steps, config.num_train_steps)
  optimizer = build_optimizer(config, total_steps)
  mesh = train.make_mesh(jax.devices()[:config.num_devices] if config.num_devices else None)
  state = train.replicate(train.create_state(params, optimizer, config.seed), mesh)
  checkpoints = Checkpoints(workdir)
  search_fn = functools.partial(beam_search.constrained_beam_search, model,
                                num_beams=config.num_beams, length_penalty=config.length_penalty)
  valid = Evaluator(config, search_fn, trie, eval_examples(config, ds, tables, "valid"), "valid",
                    mesh)
  test = Evaluator(config, search_fn, trie, eval_examples(config, ds, tables, "test"), "test", mesh,
                   per_user_path=os.path.join(workdir, "test_per_user.npz"))
  sizes = {"data/users": ds.num_users, "data/items": ds.num_items,
           "data/train_examples": len(examples), "data/batches_per_epoch": batches.num_batches,
           "data/vocab_size": tokenizer.vocab_size, "data/id_file": id_path,
           "data/mean_id_length": float(np.mean([len(w) for w in ids])),
           "model/params": int(sum(x.size for x in jax.tree.leaves(params))),
           "valid/sample_size": config.valid_users}  # 0: all validation users
  load_s = time.perf_counter() - start
  logging.info("%s: %d users, %d items, %d training examples in %d batches/epoch (examples per "
               "prompt count %s), vocabulary %d, %d parameters, %d devices", ds.name,
               ds.num_users, ds.num_items, len(examples), batches.num_batches,
               batches.bucket_sizes(), tokenizer.vocab_size, sizes["model/params"], mesh.size)

  if mode == "eval":
    return loop.evaluate_best(workdir, checkpoints, state, [valid, test], sizes)

  step_fn = train.make_train_step(lambda p, b, rng: loss.seq2seq_loss(model, p, b, rng),
                                  optimizer, mesh)
  start = time.perf_counter()
  state, meta = loop.train_loop(config, workdir, state=state, step_fn=step_fn, batches=batches,
                                mesh=mesh, validate=valid, checkpoints=checkpoints)
  train_s = time.perf_counter() - start
  return loop.final_report(workdir, checkpoints, state, meta, [valid, test], {
      "time/load_s": load_s, "time/train_s": train_s, **sizes, "devices": mesh.size})
