"""SASRec throughput: training sequences per second and evaluation users per second.

  python -m benchmarks.seqrec_speed --preset=amazon_beauty --steps=30 --out=benchmarks/results/seqrec_speed.md
  python -m benchmarks.seqrec_speed --preset=amazon_beauty --steps=30 --pack_multiple=8   # + packed
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.seqrec_speed --steps=10 \
      --mesh_sizes=1,8 --out=benchmarks/results/seqrec_devices.md

Uses the preset's model and batch exactly as `launch.py` trains it (recsys_core.train step on a mesh over
all local devices, real batches of `seqrec.data.Batches`), after one untimed step per batch shape
(packed batches come in a few row counts), which compiles it. Evaluation is timed as it runs
(users sorted by history length, each batch cut to its longest history) and, as the reference, with
every user's full max_len-wide history in user order (`recsys_core.metrics.evaluate`).
With fake CPU devices the figure shows that the sharded step runs, not a speed-up (the devices share
the same cores). With several `--mesh_sizes` every mesh trains from the same initial state on the same
batches, and the table gives each one's largest parameter difference from the first mesh's. Run it on a quiet machine: the load average is printed beside the figures.
"""

import itertools
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from configs import sasrec as sasrec_configs
from recsys_core import metrics as metrics_lib
from recsys_core import readers
from recsys_core import train
from seqrec import data as data_lib
from seqrec import run as seqrec_run
from seqrec import sasrec

_PRESET = flags.DEFINE_string("preset", "amazon_beauty", "configs/sasrec.py preset")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_STEPS = flags.DEFINE_integer("steps", 30, "timed training steps")
_EVAL_USERS = flags.DEFINE_integer("eval_users", 0, "users in the timed evaluation (0: all)")
_OUT = flags.DEFINE_string("out", "", "also write the markdown table here")
_MESH_SIZES = flags.DEFINE_list("mesh_sizes", [], "mesh sizes to compare (default: all devices)")
_PACK = flags.DEFINE_integer("pack_multiple", 0, "also time the step with sequences packed into a "
                             "multiple of this many rows (seqrec.data.Batches), e.g. 8")


def measure(config, ds, mesh, pack_multiple=0):
  model = seqrec_run.build_model(config, ds.num_items)
  optimizer = seqrec_run.build_optimizer(config)
  state = train.replicate(train.create_state(sasrec.init_params(model, 0), optimizer, 0), mesh)
  step = train.make_train_step(lambda p, b, r: sasrec.ce_loss(model, p, b, r), optimizer, mesh)
  batches = data_lib.Batches(data_lib.train_examples(ds, config.max_len), config.batch_size, 0,
                             pack_multiple)
  host = list(itertools.islice(batches.epoch(0), _STEPS.value + 1))
  start = time.perf_counter()
  for shape in dict.fromkeys(b["inputs"].shape for b in host):  # compile each shape once, untimed
    state, metrics = step(state, train.global_batch(
        next(b for b in host if b["inputs"].shape == shape), mesh))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for batch in host[1:]:
    state, metrics = step(state, train.global_batch(batch, mesh))
  jax.block_until_ready(metrics)
  train_s = time.perf_counter() - start

  users = ds.first_users(min(_EVAL_USERS.value or ds.num_users, ds.num_users))
  subset = seqrec_run.eval_sets(users, config.mask_history)["valid"]
  score_fn = seqrec_run.make_score_fn(model)
  evaluator = seqrec_run.Evaluator(config, score_fn, users, "valid", subset, mesh)
  histories = data_lib.eval_histories(users, config.max_len, "valid")
  full_width = lambda: metrics_lib.evaluate(  # the reference: users in order, every row max_len wide
      score_fn, state.params, subset, config.ks, batch_size=config.eval_batch_size, progress=False,
      batch_inputs=lambda start, stop: histories[start:stop], mesh=mesh)
  eval_s = []
  for evaluate in (lambda: evaluator(state.params), full_width):
    evaluate()  # compiles
    start = time.perf_counter()
    evaluate()
    eval_s.append(time.perf_counter() - start)
  rows = batches.rows_per_batch(0)
  return {"devices": mesh.size, "pack": pack_multiple, "compile_s": compile_s,
          "rows": f"{rows.mean():.1f} ({len(set(rows))} shapes)",
          "params": jax.device_get(state.params),
          "train_seq_per_s": _STEPS.value * config.batch_size / train_s,
          "step_ms": 1000 * train_s / _STEPS.value,
          "eval_users_per_s": users.num_users / eval_s[0],
          "full_width_eval_users_per_s": users.num_users / eval_s[1],
          "epoch_s": batches.num_batches * train_s / _STEPS.value}


def main(argv):
  del argv
  config = sasrec_configs.get_config(_PRESET.value)
  config.data_dir, config.progress = _DATA_DIR.value, False
  ds = readers.load_dataset(config.dataset, config.data_dir)
  users = min(_EVAL_USERS.value or ds.num_users, ds.num_users)
  sizes = [int(n) for n in _MESH_SIZES.value] or [jax.device_count()]
  results = [measure(config, ds, train.make_mesh(jax.devices()[:n])) for n in sizes]
  if _PACK.value:
    results += [measure(config, ds, train.make_mesh(jax.devices()[:n]), _PACK.value) for n in sizes]
  m = config.model
  lines = [
      f"# SASRec speed ({_PRESET.value}: hidden {m.hidden}, {m.num_layers} layers, max_len "
      f"{config.max_len}, batch {config.batch_size}, {_STEPS.value} timed steps after 1 compiling "
      "step per shape)",
      "", f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {jax.device_count()} devices "
      f"visible), jax {jax.__version__}; load average before/after: {LOAD[0]:.2f} / "
      f"{os.getloadavg()[0]:.2f}", "",
      "| mesh devices | rows per batch | train seq/s | step ms | est. epoch s | eval users/s | "
      "full-width eval users/s | compile s | max abs param diff vs first mesh |",
      "|---|---|---|---|---|---|---|---|---|"]
  for r in results:
    first = next(f for f in results if f["pack"] == r["pack"])  # dropout masks depend on packing
    diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                                            r["params"], first["params"])))
    lines.append(f"| {r['devices']} | {r['rows']} | {r['train_seq_per_s']:.0f} | "
                 f"{r['step_ms']:.1f} | {r['epoch_s']:.0f} | {r['eval_users_per_s']:.0f} | "
                 f"{r['full_width_eval_users_per_s']:.0f} | "
                 f"{r['compile_s']:.1f} | {diff:.2e} |")
  if _PACK.value:
    for plain, packed in zip(results[:len(sizes)], results[len(sizes):]):
      lines.append(f"\nPacked into multiples of {_PACK.value} rows on {plain['devices']} device(s): "
                   f"{packed['train_seq_per_s'] / plain['train_seq_per_s']:.2f}x the unpacked "
                   "training throughput.")
  r = results[0]
  lines.append(f"\nEvaluation ({users} validation users), users sorted by history length and each "
               "batch cut to its longest history (seqrec.run.Evaluator): "
               f"{r['eval_users_per_s'] / r['full_width_eval_users_per_s']:.2f}x the full-width "
               "users/s.")
  lines.append("")
  print("\n".join(lines))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write("\n".join(lines))


LOAD = os.getloadavg()

if __name__ == "__main__":
  app.run(main)
