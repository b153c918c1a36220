"""The distributed path's cost: SASRec training sequences/s over processes x devices, and the LAE
Gram matrix accumulated over 1 vs 8 devices, against the one-device reference in the same run.

  python -m benchmarks.scaling --out=benchmarks/results/scaling.md
  python -m benchmarks.scaling --steps=30 --layouts=1x1,1x8,2x4      # a quick look

Each layout P x D is P processes of D devices each (`--xla_force_host_platform_device_count=D`,
JAX's distributed runtime on 127.0.0.1 with gloo collectives when P > 1), training the `amazon_beauty`
SASRec preset's model on the synthetic dataset at one global batch (256 sequences) for --steps timed
steps after a warm-up. On a CPU the fake devices share the same cores, so a layout's ratio to 1 x 1
is the overhead of splitting the batch and reducing the gradients (sharding, collectives, process
coordination), not a speed-up; on accelerators the same code spreads the work.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags

from benchmarks import reports

_STEPS = flags.DEFINE_integer("steps", 60, "timed training steps per layout")
_LAYOUTS = flags.DEFINE_list("layouts", ["1x1", "1x2", "1x4", "1x8", "2x1", "2x2", "2x4"],
                             "processes x devices per process")
_GRAM_USERS = flags.DEFINE_integer("gram_users", 20000, "users of the LAE Gram benchmark matrix")
_GRAM_ITEMS = flags.DEFINE_integer("gram_items", 3000, "items of the LAE Gram benchmark matrix")
_OUT = flags.DEFINE_string("out", None, "markdown report to write (default: print only)")
_WORKER = flags.DEFINE_string("worker", None, "internal: 'sasrec:P:K:PORT' or 'gram:D'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOBAL_BATCH = 256


def sasrec_worker(processes: int, process_id: int, port: int, steps: int) -> None:
  """Times `steps` SASRec training steps on the job's global mesh; process 0 prints one JSON line."""
  from recsys_core import distributed  # pylint: disable=import-outside-toplevel
  if processes > 1:
    distributed.initialize("auto", f"127.0.0.1:{port}", processes, process_id)
  import jax  # pylint: disable=import-outside-toplevel
  from configs import sasrec as sasrec_config  # pylint: disable=import-outside-toplevel
  from recsys_core import readers, train  # pylint: disable=import-outside-toplevel
  from seqrec import data as data_lib, run as seqrec_run, sasrec  # pylint: disable=import-outside-toplevel
  config = sasrec_config.get_config("amazon_beauty")
  ds = readers.load_dataset("synthetic", "")
  model = seqrec_run.build_model(config, ds.num_items)
  optimizer = seqrec_run.build_optimizer(config)
  mesh = train.make_mesh()
  state = train.replicate(train.create_state(sasrec.init_params(model, 0), optimizer, 0), mesh)
  step_fn = train.make_train_step(lambda p, b, rng: sasrec.ce_loss(model, p, b, rng), optimizer,
                                  mesh)
  batches = data_lib.Batches(data_lib.train_examples(ds, config.max_len), GLOBAL_BATCH, 0)
  host = [b for _, b in zip(range(steps + 5), _cycle(batches))]
  for batch in host[:5]:  # compile and warm up
    state, metrics = step_fn(state, train.global_batch(batch, mesh))
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for batch in host[5:]:
    state, metrics = step_fn(state, train.global_batch(batch, mesh))
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  if jax.process_index() == 0:
    print(json.dumps({"seq_per_s": steps * GLOBAL_BATCH / seconds, "devices": mesh.size,
                      "processes": jax.process_count(), "loss": float(metrics["loss"])}))


def _cycle(batches):
  epoch = 0
  while True:
    yield from batches.epoch(epoch)
    epoch += 1


def gram_worker(devices: int, users: int, items: int) -> None:
  """Times the LAE Gram matrix on the host (sparse) and accumulated over `devices` devices."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import scipy.sparse as sp  # pylint: disable=import-outside-toplevel
  from lae_jax import gram, linalg  # pylint: disable=import-outside-toplevel
  from recsys_core import train  # pylint: disable=import-outside-toplevel
  x = sp.random(users, items, density=0.01, random_state=0, format="csr",
                data_rvs=np.ones, dtype=np.float32)
  x.data[:] = 1.0
  mesh = train.make_mesh(jax.devices()[:devices])
  out = {}
  for name, fn in (("host", lambda: linalg.gram_matrix(x)),
                   ("mesh", lambda: gram.gram_matrix_on_mesh(x, mesh))):
    fn()  # compile
    start = time.perf_counter()
    result = fn()
    out[name] = time.perf_counter() - start
    out[f"{name}_sum"] = float(np.asarray(result, np.float64).sum())
  print(json.dumps({**out, "devices": devices}))


def _run(args, devices, timeout=1200):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.Popen([sys.executable, "-m", "benchmarks.scaling", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _last_json(process, timeout=1200) -> dict:
  out, _ = process.communicate(timeout=timeout)
  lines = [line for line in out.splitlines() if line.startswith("{")]
  if process.returncode or not lines:
    raise RuntimeError(f"worker failed with status {process.returncode}")
  return json.loads(lines[-1])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def main(argv):
  del argv
  if _WORKER.value:
    kind, *rest = _WORKER.value.split(":")
    if kind == "sasrec":
      processes, process_id, port = map(int, rest)
      sasrec_worker(processes, process_id, port, _STEPS.value)
    else:
      gram_worker(int(rest[0]), _GRAM_USERS.value, _GRAM_ITEMS.value)
    return
  load_before = os.getloadavg()
  rows = []
  for layout in _LAYOUTS.value:
    processes, devices = map(int, layout.split("x"))
    port = _free_port()
    workers = [_run([f"--worker=sasrec:{processes}:{k}:{port}", f"--steps={_STEPS.value}"],
                    devices) for k in range(processes)]
    result = _last_json(workers[0])
    for w in workers[1:]:
      w.communicate(timeout=600)
    rows.append((layout, result))
    print(layout, result, flush=True)
  reference = rows[0][1]["seq_per_s"]
  gram = {d: _last_json(_run([f"--worker=gram:{d}", f"--gram_users={_GRAM_USERS.value}",
                              f"--gram_items={_GRAM_ITEMS.value}"], 8)) for d in (1, 8)}
  lines = [
      "# Scaling: the distributed path's overhead", "",
      f"Regenerate: `python -m benchmarks.scaling --steps={_STEPS.value} "
      f"--layouts={','.join(_LAYOUTS.value)} --out=benchmarks/results/scaling.md`", "",
      *reports.setup_block(load_before, os.getloadavg())[:-1],
      "- Every device is a fake CPU device (`--xla_force_host_platform_device_count`) on the same "
      "cores, processes on 127.0.0.1 with gloo collectives.",
      f"- SASRec: the `amazon_beauty` preset's model (2 layers, hidden 64, max length 50) on the "
      f"synthetic dataset, global batch {GLOBAL_BATCH}, {_STEPS.value} timed steps after 5 "
      "warm-up steps, unpacked batches.",
      "- On these shared cores a ratio below 1 is the overhead of splitting and reducing, not a "
      "loss of speed-up; accelerators spread the same work over real devices.", "",
      "## SASRec training", "",
      "| processes x devices | sequences/s | ratio to 1 x 1 | loss after the timed steps |",
      "|---|---|---|---|"]
  for layout, r in rows:
    lines.append(f"| {layout.replace('x', ' x ')} | {r['seq_per_s']:,.0f} | "
                 f"{r['seq_per_s'] / reference:.2f} | {r['loss']:.4f} |")
  lines += ["", f"## LAE Gram matrix X^T X ({_GRAM_USERS.value:,} users x {_GRAM_ITEMS.value:,} "
            "items, 1% dense)", "",
            "| route | seconds | ratio to the host route | sum of G |", "|---|---|---|---|"]
  host = gram[1]["host"]
  lines.append(f"| host, sparse (scipy) | {host:.3f} | 1.00 | {gram[1]['host_sum']:.0f} |")
  for d in (1, 8):
    lines.append(f"| mesh, {d} device{'s' if d > 1 else ''} | {gram[d]['mesh']:.3f} | "
                 f"{gram[d]['mesh'] / host:.2f} | {gram[d]['mesh_sum']:.0f} |")
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
