"""The T5 trains through the shared step (recsys_core.train) and checkpoints (recsys_core.checkpoint): the loss
drops, a checkpoint restores exactly, and 8 fake devices give the single-device parameters."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recsys_core import train
from recsys_core.checkpoint import Checkpoints
from gram_jax import loss
from gram_jax import t5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(dropout_rate: float = 0.1) -> t5.T5:
  return t5.T5(t5.t5_config("tiny", vocab_size=30, d_model=16, d_kv=4, d_ff=32, num_heads=4,
                            num_layers=1, num_decoder_layers=1, num_prompt_positions=3,
                            dropout_rate=dropout_rate))


def batches(count: int, batch: int = 16, seed: int = 0) -> list:
  """GRAM-shaped batches: 3 prompts of 6 tokens (the last one padded), labels = 1-3 ID tokens +
  EOS (1), right-padded with 0; the last two rows are padding rows (weight 0)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    input_ids = rng.integers(2, 30, size=(batch, 3, 6))
    input_ids[:, 2, rng.integers(2, 6):] = 0
    labels = rng.integers(2, 30, size=(batch, 4))
    ends = rng.integers(1, 4, size=batch)
    labels[np.arange(batch), ends] = 1
    labels[np.arange(4)[None, :] > ends[:, None]] = 0
    out.append({"input_ids": input_ids.astype(np.int32), "labels": labels.astype(np.int32),
                "weights": (np.arange(batch) < batch - 2).astype(np.float32)})
  return out


# Runs in a fresh process with 8 fake CPU devices (as tests/test_train.py does for SASRec): 4 AdamW
# steps on a mesh of 1 device and on a mesh of 8, same state and batches. Without dropout: each
# dropout site costs ~0.4 s of compilation per step function here, and the sharding invariance of
# the dropout masks is the shared step's, tested with SASRec in tests/test_train.py.
_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, optax
    from recsys_core import train
    from gram_jax import loss, t5
    from tests.test_gram_train import batches, tiny_model
    assert jax.device_count() == 8, jax.devices()
    model = tiny_model(dropout_rate=0.0)
    optimizer = optax.adamw(1e-3, weight_decay=0.01)
    loss_fn = lambda p, b, r: loss.seq2seq_loss(model, p, b, r)
    out = {}
    for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
      mesh = train.make_mesh(devices)
      state = train.replicate(train.create_state(t5.init_params(model, 0), optimizer, 0), mesh)
      step = train.make_train_step(loss_fn, optimizer, mesh)
      losses = []
      for b in batches(4):
        state, metrics = step(state, train.global_batch(b, mesh))
        losses.append(float(metrics["loss"]))
      out[name] = (jax.device_get(state.params), losses)
    diff = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), out["one"][0], out["eight"][0])
    print(json.dumps({"max_diff": max(jax.tree.leaves(diff)), "one": out["one"][1],
                      "eight": out["eight"][1]}))
""")


@pytest.fixture(scope="module")
def tiny():
  """(model with T5's dropout 0.1, its copy without dropout, params, one batch)."""
  model = tiny_model()
  return model, tiny_model(dropout_rate=0.0), t5.init_params(model, 1), batches(1)[0]


@functools.lru_cache
def _jit(fn, model):
  return jax.jit(functools.partial(fn, model))


def test_loss_ignores_label_padding_and_padded_rows(tiny):
  _, nodrop, params, batch = tiny
  value, aux = _jit(loss.seq2seq_loss, nodrop)(params, batch, jax.random.PRNGKey(0))
  logp = np.asarray(_jit(loss.token_log_probs, nodrop)(params, batch["input_ids"],
                                                       batch["labels"]))
  # by hand: the mean of -log p over the real tokens of the real rows
  real = (batch["labels"] != 0) & (batch["weights"][:, None] > 0)
  np.testing.assert_allclose(float(value), -logp[real].mean(), rtol=1e-5)
  assert float(aux["tokens"]) == real.sum() and float(aux["examples"]) == 14
  np.testing.assert_array_equal(loss.shift_right(batch["labels"])[:, 1:], batch["labels"][:, :-1])


def test_t5_trains_through_the_shared_step_with_dropout_and_checkpoints(tiny, tmp_path):
  model, nodrop, params, batch = tiny
  deterministic_loss = float(_jit(loss.seq2seq_loss, nodrop)(params, batch,
                                                             jax.random.PRNGKey(0))[0])
  optimizer = optax.adamw(3e-3, weight_decay=0.01)
  mesh = train.make_mesh(jax.devices()[:1])
  state = train.replicate(train.create_state(jax.tree.map(jnp.copy, params), optimizer, 0), mesh)
  step = train.make_train_step(lambda p, b, r: loss.seq2seq_loss(model, p, b, r), optimizer, mesh)
  batch = train.global_batch(batch, mesh)
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[0] != deterministic_loss  # dropout is on, keyed by the step's rng
  assert float(metrics["examples"]) == 14 and bool(metrics["finite"])
  assert losses[-1] < 0.7 * losses[0], losses  # memorising one batch
  checkpoints = Checkpoints(str(tmp_path))
  checkpoints.save("latest", state, {"epoch": 0})
  restored, meta = checkpoints.restore("latest", state)
  checkpoints.close()
  assert meta == {"epoch": 0} and int(restored.step) == 30
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params),
               jax.device_get(state.params))


@pytest.mark.slow  # a fresh 8-device process; the shared step's sharding is in test_train.py
def test_sharded_step_on_8_devices_equals_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  print(f"8 devices vs 1, after 4 AdamW steps: max parameter difference {out['max_diff']:.1e}")
  # Same data and state: only the order of the cross-device sums differs.
  assert out["max_diff"] < 1e-5, out
  np.testing.assert_allclose(out["one"], out["eight"], rtol=1e-5)
