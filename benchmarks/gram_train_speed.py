"""GRAM training speed: the plain late fusion ([batch, N, L] prompts, every slot encoded) against
distinct-prompt encoding (each distinct item prompt of a batch encoded once, gram_jax/t5.py), on
the SAME batches of a preset, in one run.

  python -m benchmarks.gram_train_speed --preset=amazon_beauty --steps=20 --data_dir=../shared/data
  python -m benchmarks.gram_train_speed --preset=amazon_beauty --group_prefixes --prompt_buckets=

The batches are the first `--steps` of the preset's epoch 0 (`gram_jax.batching.PromptBatches`
with its prompt buckets; `--group_prefixes` / `--prompt_buckets` override the preset's), with the
preset's model, dropout and optimizer through the shared step (recsys_core/train.py). The lexical
IDs are ours built from bag-of-words item embeddings (`--ids=bow`: the preset's tokenizer, its 8k
vocabulary and ID depth, without extracting MiniLM embeddings; the step's cost depends on shapes
only) or the authors' (`--ids=authors`: their ID words extend the vocabulary to ~15k); tokenizer
and IDs are built in `--workdir` (reused when it holds them). Each path compiles every shape it
meets before it is timed; then `--repeats` alternating passes over the batches (plain, distinct,
plain, ...) from the same initial state, the fastest pass of each counted: examples/s = real
(weight-1) examples / wall seconds; the process CPU seconds are printed too (steadier than wall
time when other jobs share the cores). Building the host batches is not timed (reported apart).
Exactness: each batch's loss at the initial parameters with dropout off, both paths.
The LAST line printed is one JSON object:
  {"plain_examples_per_s", "distinct_examples_per_s", "max_abs_loss_diff"}.
The machine's load average is printed: on a shared machine the ratio is the figure to read.
"""

import dataclasses
import functools
import json
import os
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

from configs import gram as gram_configs
from gram_jax import batching
from gram_jax import data as data_lib
from gram_jax import loss
from gram_jax import run as gram_run
from gram_jax import t5
from recsys_core import readers
from recsys_core import train

_PRESET = flags.DEFINE_string("preset", "amazon_beauty", "configs/gram.py preset")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding <dataset>/")
_STEPS = flags.DEFINE_integer("steps", 20, "timed training steps (the first batches of epoch 0)")
_REPEATS = flags.DEFINE_integer("repeats", 2, "timed passes over the batches per path")
_GROUP = flags.DEFINE_bool("group_prefixes", None, "batches of consecutive prefixes of few users "
                           "(default: the preset's config.group_prefixes)")
_BUCKETS = flags.DEFINE_list("prompt_buckets", None, "fine-prompt buckets (default: the preset's; "
                             "empty: one bucket)")
_IDS = flags.DEFINE_enum("ids", "bow", ["bow", "authors"], "lexical IDs: ours from bag-of-words "
                        "embeddings, or the authors' released ones")
_WORKDIR = flags.DEFINE_string("workdir", "", "where the tokenizer and IDs are built and kept "
                               "(default: a temporary folder)")


def preset_config():
  config = gram_configs.get_config(_PRESET.value)
  config.data_dir = _DATA_DIR.value
  if _IDS.value == "authors":
    config.ids.source = "authors"
  else:
    config.ids.embeddings = "bow"
  config.progress = False
  if _GROUP.value is not None:
    config.group_prefixes = _GROUP.value
  if _BUCKETS.value is not None:
    config.prompt_buckets = tuple(int(b) for b in _BUCKETS.value if b)
  return config


def training_examples(config, workdir: str) -> tuple:
  """(GramExamples of the training prefixes, vocabulary size), as gram_jax/run.py builds them."""
  ds = readers.load_dataset(config.dataset, config.data_dir)
  tokenizer, _, _, tables = gram_run.prompt_tables(config, ds, workdir)
  return (data_lib.train_examples(ds, tables, config.max_his, config.item_prompts),
          tokenizer.vocab_size)


def host_batches(config, examples, distinct: bool) -> tuple:
  """(the first --steps host batches of epoch 0, seconds to build them)."""
  batches = batching.PromptBatches(examples, config.batch_size, config.seed, config.num_fine,
                                   config.prompt_buckets, config.group_prefixes, distinct,
                                   num_groups=jax.device_count())
  start = time.perf_counter()
  out = [b for b, _ in zip(batches.epoch(0), range(_STEPS.value))]
  return out, time.perf_counter() - start


def shape_key(batch: dict) -> tuple:
  return tuple(sorted((k, v.shape) for k, v in batch.items()))


def timed_pass(step, state, batches) -> tuple:
  """(wall seconds, process CPU seconds) of one pass of the train step over device batches."""
  start, cpu = time.perf_counter(), time.process_time()
  for batch in batches:
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return time.perf_counter() - start, time.process_time() - cpu


def main(_):
  config = preset_config()
  with tempfile.TemporaryDirectory() as tmp:
    workdir = _WORKDIR.value or tmp
    os.makedirs(workdir, exist_ok=True)
    examples, vocab_size = training_examples(config, workdir)
  model, params = gram_run.build_model(config, vocab_size)
  deterministic = t5.T5(dataclasses.replace(model.config, dropout_rate=0.0))
  mesh = train.make_mesh()
  plain, plain_s = host_batches(config, examples, False)
  distinct, distinct_s = host_batches(config, examples, True)
  real = float(sum(b["weights"].sum() for b in plain))
  encoded = {"plain": sum(b["input_ids"].shape[0] * b["input_ids"].shape[1] for b in plain),
             "distinct": sum(b["user_prompts"].shape[0] + np.prod(b["item_prompts"].shape[:2])
                             for b in distinct)}
  print(f"{config.dataset}: {len(plain)} batches of {config.batch_size} ({real:.0f} real "
        f"examples), group_prefixes={config.group_prefixes}, prompt_buckets="
        f"{tuple(config.prompt_buckets)}, vocabulary {vocab_size}, {mesh.size} device(s); prompts "
        f"encoded per example: plain {encoded['plain'] / real:.2f}, distinct "
        f"{encoded['distinct'] / real:.2f}; host batch building ms/batch: plain "
        f"{1e3 * plain_s / len(plain):.0f}, distinct {1e3 * distinct_s / len(distinct):.0f}",
        flush=True)

  optimizer = gram_run.build_optimizer(config, config.epochs * 1000)
  step = train.make_train_step(lambda p, b, rng: loss.seq2seq_loss(model, p, b, rng), optimizer,
                               mesh)
  fresh = lambda: train.replicate(train.create_state(jax.tree.map(np.asarray, params), optimizer,
                                                     config.seed), mesh)
  device = {name: [train.global_batch(b, mesh) for b in batches]
            for name, batches in (("plain", plain), ("distinct", distinct))}
  compile_s = {}
  for name, batches in device.items():  # compile every shape outside the timing
    start, state, seen = time.perf_counter(), fresh(), set()
    for batch in batches:
      if shape_key(batch) not in seen:
        seen.add(shape_key(batch))
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    compile_s[name] = (time.perf_counter() - start, len(seen))
  print("warm-up (compilation) s / shapes: " + ", ".join(
      f"{k} {s:.0f} / {n}" for k, (s, n) in compile_s.items()), flush=True)

  best = {"plain": np.inf, "distinct": np.inf}
  best_cpu = dict(best)
  for r in range(_REPEATS.value):
    for name, batches in device.items():
      seconds, cpu = timed_pass(step, fresh(), batches)
      best[name], best_cpu[name] = min(best[name], seconds), min(best_cpu[name], cpu)
      print(f"pass {r}: {name} {seconds:.1f} s ({cpu:.1f} CPU s), {real / seconds:.1f} examples/s",
            flush=True)

  loss_fn = jax.jit(functools.partial(loss.seq2seq_loss, deterministic))
  key = jax.random.PRNGKey(0)
  diffs = [abs(float(loss_fn(params, a, key)[0]) - float(loss_fn(params, b, key)[0]))
           for a, b in zip(plain, distinct)]
  plain_rate, distinct_rate = real / best["plain"], real / best["distinct"]
  print(f"distinct / plain: {distinct_rate / plain_rate:.2f}x wall, "
        f"{best_cpu['plain'] / best_cpu['distinct']:.2f}x CPU time; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
  print(json.dumps({"plain_examples_per_s": round(plain_rate, 2),
                    "distinct_examples_per_s": round(distinct_rate, 2),
                    "max_abs_loss_diff": float(max(diffs))}))


if __name__ == "__main__":
  app.run(main)
