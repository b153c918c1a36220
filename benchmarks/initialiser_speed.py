"""SASRec training-step time with each ACE initialiser's item table (what an epoch costs per row of ace.md).

  python -m benchmarks.initialiser_speed --out=benchmarks/results/initialiser_speed.md

For each `configs/ace.py:<dataset>_<init>_<extractor>` preset: the real item table module and
parameters (`seqrec.initialisers.build`, the cached LLM embeddings), one real packed batch of the
dataset, and the median time of the jit-compiled value_and_grad of the training loss (dropout on),
after one compiling call. Tables computed by a module over every item (WhitenRec(+), LLMEmb) pay
for it at every step. Reference rows, timed in the same run: LLMEmb's adapter as two nn.Dense layers
(the intermediate [items, D/2] formed), which the reassociated adapter of seqrec/initialisers.py
avoids; and each table with its frozen inputs inside the gradient, which `frozen_input` avoids.
"""

import dataclasses
import os
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import ace as ace_configs
from recsys_core import readers
from seqrec import data
from seqrec import initialisers
from seqrec import run
from seqrec import sasrec

_DATASET = flags.DEFINE_string("dataset", "amazon_beauty", "configs/ace.py dataset")
_EXTRACTOR = flags.DEFINE_string("extractor", "smollm2", "embedding extractor (cached)")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_INITS = flags.DEFINE_list("inits", list(initialisers.KINDS), "initialisers to time")
_REPEATS = flags.DEFINE_integer("repeats", 10, "timed steps per initialiser")
_OUT = flags.DEFINE_string("out", "", "also write the markdown table here")


class TwoDenseAdapter(initialisers.LLMEmbTable):
  """The reference LLMEmb table: Linear(D, D // 2) -> Linear(D // 2, hidden) applied in order
  (LLMEmbTable's fields and parameter names, without the reassociation)."""

  @nn.compact
  def __call__(self, deterministic: bool = True) -> jax.Array:
    x = self.frozen_input("frozen_base", (self.rows, self.dims))
    for features, name in ((self.dims // 2, "adapter_0"), (self.hidden, "adapter_1")):
      x = nn.Dense(features, kernel_init=initialisers.xavier_normal,
                   bias_init=initialisers.torch_default_bias(x.shape[-1]), name=name)(x)
    return x


class FrozenInGradient:
  """Mixin, the reference of `FrozenInputTable.frozen_input`: the frozen inputs inside the gradient
  (jax computes their gradient; the optimizer then discards it)."""

  def frozen_input(self, name, shape):
    return self.param(name, nn.initializers.zeros, shape)


def with_frozen_in_gradient(module):
  """The same table module (fields and parameters) with `FrozenInGradient`."""
  fields = {f: getattr(module, f) for f in module.__dataclass_fields__ if f not in ("parent", "name")}
  return type(f"{type(module).__name__}Reference", (FrozenInGradient, type(module)), {})(**fields)


def step_ms(config, ds, init, batch) -> float:
  """Median ms of value_and_grad of the CE loss on `batch` with this item table."""
  model = run.build_model(config, ds.num_items, init and init.module)
  params = (sasrec.init_params(model, config.seed) if init is None
            else initialisers.init_params(model, config.seed, init))
  grad = jax.jit(jax.value_and_grad(lambda p, key: sasrec.ce_loss(model, p, batch, key)[0]))
  key = jax.random.PRNGKey(1)
  jax.block_until_ready(grad(params, key))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(grad(params, key))
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def main(argv):
  del argv
  load = os.getloadavg()
  ds = readers.load_dataset(_DATASET.value, _DATA_DIR.value)
  rows = []
  for kind in _INITS.value:
    preset = f"{_DATASET.value}_id" if kind == "id" else f"{_DATASET.value}_{kind}_{_EXTRACTOR.value}"
    config = ace_configs.get_config(preset)
    config.data_dir = _DATA_DIR.value
    examples = data.train_examples(ds, config.max_len)
    batches = data.Batches(examples, config.batch_size, config.seed, config.pack_multiple)
    batch = {k: jnp.asarray(v) for k, v in next(iter(batches.epoch(0))).items()}
    init = initialisers.build(config, ds)
    rows.append((kind, step_ms(config, ds, init, batch)))
    print(rows[-1], flush=True)
    if kind in ("whitenrec", "whitenrec_plus", "llmemb"):
      reference = dataclasses.replace(init, module=with_frozen_in_gradient(init.module))
      rows.append((f"{kind}, frozen inputs in the gradient (reference)",
                   step_ms(config, ds, reference, batch)))
      print(rows[-1], flush=True)
    if kind == "llmemb":
      m = init.module
      reference = dataclasses.replace(init, module=TwoDenseAdapter(m.rows, m.dims, m.hidden))
      rows.append(("llmemb, two nn.Dense (reference)", step_ms(config, ds, reference, batch)))
      print(rows[-1], flush=True)
  base = dict(rows).get("id", rows[0][1])
  lines = [f"# SASRec step time per initialiser ({_DATASET.value}, {_EXTRACTOR.value})", "",
           f"`python -m benchmarks.initialiser_speed --dataset={_DATASET.value} "
           f"--extractor={_EXTRACTOR.value}`: median of {_REPEATS.value} value_and_grad calls of "
           "the training loss on one real packed batch (256 sequences), configs/ace.py settings; "
           f"{jax.devices()[0].device_kind}, jax {jax.__version__}; load average before/after: "
           f"{load[0]:.2f} / {os.getloadavg()[0]:.2f}.", "",
           "| initialiser | step ms | vs ID-only |", "|---|---|---|"]
  lines += [f"| {kind} | {ms:.1f} | {ms / base:.2f}x |" for kind, ms in rows]
  timed = dict(rows)
  if "llmemb" in timed:
    lines += ["", f"LLMEmb's reassociated adapter: {timed['llmemb, two nn.Dense (reference)'] / timed['llmemb']:.2f}x "
              "faster than the two nn.Dense layers, same parameters and table (tested)."]
  speedups = [
      f"{kind} {timed[f'{kind}, frozen inputs in the gradient (reference)'] / timed[kind]:.2f}x"
      for kind in ("whitenrec", "whitenrec_plus", "llmemb") if kind in timed]
  if speedups:
    lines += ["", "Frozen inputs outside the gradient (`FrozenInputTable.frozen_input`, "
              "stop_gradient; the same trainable gradients, tested) against inside it: "
              + ", ".join(speedups) + " faster steps."]
  print("\n".join(lines))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
