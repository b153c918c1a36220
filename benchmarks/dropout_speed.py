"""Training-step time with flax's threefry dropout masks against recsys_core/dropout.py's hashed masks.

  python -m benchmarks.dropout_speed --out=benchmarks/results/dropout_speed.md

Times jit-compiled value_and_grad of each model's training loss (dropout on) with random inputs
of the shapes the real runs use: GRAM's CPU preset (tiny T5, 64 examples x 6 prompts x 64 tokens,
8 label tokens, 8k vocabulary) and the ACE SASRec (hidden 128, a packed Beauty-like batch: rows of
50 positions holding 256 sequences of mean length 8.4, 12,102 item rows). The reference swaps
recsys_core.dropout.Dropout for flax.linen.Dropout in the same process; "no dropout" sets the rates to 0
(the floor).
"""

import os
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recsys_core import dropout
from gram_jax import loss as gram_loss
from gram_jax import t5
from seqrec import data
from seqrec import sasrec

_REPEATS = flags.DEFINE_integer("repeats", 10, "timed steps per configuration")
_OUT = flags.DEFINE_string("out", "", "also write the markdown table here")
HASHED = dropout.Dropout


def timed(fn, *args) -> float:
  """Median milliseconds of fn(*args) after one compiling call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def gram_step(rate: float):
  rng = np.random.default_rng(0)
  batch = {"input_ids": jnp.asarray(rng.integers(1, 8000, (64, 6, 64)), jnp.int32),
           "labels": jnp.asarray(rng.integers(1, 8000, (64, 8)), jnp.int32)}
  model = t5.T5(t5.t5_config("tiny", vocab_size=8000, num_prompt_positions=21, dropout_rate=rate))
  params = t5.init_params(model, 0)
  grad = jax.jit(jax.value_and_grad(
      lambda p, key: gram_loss.seq2seq_loss(model, p, batch, key)[0]))
  return timed(grad, params, jax.random.PRNGKey(1))


def sasrec_step(rate: float):
  rng = np.random.default_rng(0)
  lengths = np.minimum(rng.geometric(1 / 8.4, 256), 50)      # Beauty: mean 8.4 of at most 50
  examples = data.Examples(items=rng.integers(0, 12101, 256 * 51).astype(np.int32),
                           targets=50 + 51 * np.arange(256), lengths=lengths, max_len=50)
  batch = data.Batches(examples, 256, 0, pack_multiple=8).packed(np.arange(256))
  batch = {name: jnp.asarray(value) for name, value in batch.items()}
  batch["weights"] = jnp.ones(256, jnp.float32)
  model = sasrec.SASRec(num_items=12101, hidden=128, dropout=rate, attention_dropout=0.6 * rate)
  params = sasrec.init_params(model, 0)
  grad = jax.jit(jax.value_and_grad(lambda p, key: sasrec.ce_loss(model, p, batch, key)[0]))
  return timed(grad, params, jax.random.PRNGKey(1))


def main(argv):
  del argv
  load = os.getloadavg()
  rows = []
  for name, step, rate in (("GRAM CPU preset (tiny T5), dropout .1", gram_step, 0.1),
                           ("SASRec hidden 128, packed Beauty batch, dropout .5 / .3",
                            sasrec_step, 0.5)):
    dropout.Dropout = nn.Dropout
    threefry = step(rate)
    dropout.Dropout = HASHED
    hashed, floor = step(rate), step(0.0)
    rows.append(f"| {name} | {threefry:.0f} | {hashed:.0f} | {floor:.0f} | "
                f"{threefry / hashed:.2f}x |")
  lines = [f"# Training-step time: threefry dropout masks against hashed masks "
           f"({jax.devices()[0].device_kind}, jax {jax.__version__}, median of {_REPEATS.value}; "
           f"load average before/after {load[0]:.2f} / {os.getloadavg()[0]:.2f})", "",
           "| step (value_and_grad) | flax nn.Dropout (threefry) ms | recsys_core.dropout (hashed) ms | "
           "no dropout ms | speed-up |", "|---|---|---|---|---|", *rows, ""]
  print("\n".join(lines))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
