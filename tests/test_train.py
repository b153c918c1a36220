"""recsys_core/train.py: the data-parallel step (8 fake devices == 1 device), batches, the NaN stop."""

import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recsys_core import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process with 8 fake CPU devices (the device count is fixed at jax import). Trains
# a small SASRec with dropout for 4 steps on a mesh of 1 device and on a mesh of 8, from the same
# state and batches, one sequence per row and packed (seqrec/data.py), and prints the largest
# parameter difference and both loss curves. Then evaluates
# the trained model on 37 users (not a multiple of 8) without a mesh and split over the 8 devices.
_SHARDED_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np, optax, scipy.sparse as sp
    from recsys_core import metrics as metrics_lib, train
    from recsys_core.dataset import EvalSet
    from seqrec import data, sasrec
    assert jax.device_count() == 8, jax.devices()
    model = sasrec.SASRec(num_items=50, max_len=8, hidden=16, inner=32, num_layers=2,
                          num_heads=2, dropout=0.3, attention_dropout=0.3)
    optimizer = optax.adam(1e-2)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=(4, 32))
    batches = [{"inputs": np.where(np.arange(8) < l[:, None],
                                   rng.integers(1, 51, size=(32, 8)), 0).astype(np.int32),
                "targets": rng.integers(1, 51, size=32).astype(np.int32),
                "weights": (np.arange(32) < 30).astype(np.float32)} for l in lengths]
    examples = data.Examples(items=rng.integers(0, 50, size=200).astype(np.int32),
                             targets=np.arange(100, 200), lengths=rng.integers(1, 9, size=100),
                             max_len=8)
    packed = list(data.Batches(examples, 32, 0, pack_multiple=8).epoch(0))  # 4 batches
    assert all("segments" in b for b in packed) and packed[0]["inputs"].shape[0] < 32
    loss = lambda p, b, r: sasrec.ce_loss(model, p, b, r)
    out = {}
    for name, devices, batches in (("one", jax.devices()[:1], batches),
                                   ("eight", jax.devices(), batches),
                                   ("packed_one", jax.devices()[:1], packed),
                                   ("packed_eight", jax.devices(), packed)):
      mesh = train.make_mesh(devices)
      state = train.replicate(train.create_state(sasrec.init_params(model, 0), optimizer, 0), mesh)
      step = train.make_train_step(loss, optimizer, mesh)
      losses = []
      for b in batches:
        batch = train.global_batch(b, mesh)
        assert len(batch["inputs"].sharding.device_set) == len(devices)
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
      out[name] = (jax.device_get(state.params), losses, int(state.step))
    max_diff = lambda a, b: max(jax.tree.leaves(jax.tree.map(
        lambda x, y: float(np.max(np.abs(x - y))), out[a][0], out[b][0])))
    histories = rng.integers(0, 51, size=(37, 8)).astype(np.int32)
    target = sp.csr_matrix((np.ones(37), (np.arange(37), rng.integers(0, 50, 37))), shape=(37, 50))
    score_fn = lambda p, unused, seq: model.apply({"params": p}, seq, method=model.scores)[:, 1:]
    eval_set = EvalSet(sp.csr_matrix((37, 50)), target)
    evaluated = [metrics_lib.evaluate(score_fn, out["one"][0], eval_set, (5, 20), batch_size=16,
                                      progress=False, mesh=mesh,
                                      batch_inputs=lambda start, stop: histories[start:stop])
                 for mesh in (None, train.make_mesh())]
    print(json.dumps({"max_diff": max_diff("one", "eight"), "one": out["one"][1:],
                      "eight": out["eight"][1:], "eval": evaluated,
                      "packed_diff": max_diff("packed_one", "packed_eight"),
                      "packed_one": out["packed_one"][1:],
                      "packed_eight": out["packed_eight"][1:]}))
""")


def test_sharded_step_on_8_devices_equals_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  # Same dropout masks (recsys_core/dropout.py: a function of the key and the global index), same data:
  # only the order of the cross-device gradient sums differs, so after 4 Adam steps (lr 1e-2)
  # parameters agree to 1e-5.
  assert out["max_diff"] < 1e-5 and out["packed_diff"] < 1e-5, out
  assert out["one"][1] == out["eight"][1] == out["packed_one"][1] == out["packed_eight"][1] == 4
  np.testing.assert_allclose(out["one"][0], out["eight"][0], rtol=1e-5)
  np.testing.assert_allclose(out["packed_one"][0], out["packed_eight"][0], rtol=1e-5)
  unsharded, sharded = out["eval"]
  assert unsharded["num_users"] == sharded["num_users"] == 37
  assert unsharded == pytest.approx(sharded, abs=1e-12), out["eval"]


def _quadratic_loss(params, batch, rng):
  del rng
  err = batch["x"] @ params["w"] - batch["y"]
  return jnp.mean(err ** 2), {"examples": jnp.float32(batch["x"].shape[0])}


def test_step_matches_plain_optax_and_counts():
  mesh = train.make_mesh()
  optimizer = optax.sgd(0.1)
  params = {"w": jnp.ones((3,))}
  state = train.replicate(train.create_state(params, optimizer, 0), mesh)
  step = train.make_train_step(_quadratic_loss, optimizer, mesh)
  batch = {"x": np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "y": np.ones(4, np.float32)}
  expected = params["w"] - 0.1 * jax.grad(lambda w: _quadratic_loss({"w": w}, batch, None)[0])(
      params["w"])
  state, metrics = step(state, train.global_batch(batch, mesh))
  chex.assert_trees_all_close(state.params["w"], expected, rtol=1e-6)
  assert int(state.step) == 1 and bool(metrics["finite"])
  assert state.params["w"].sharding.spec == jax.sharding.PartitionSpec()


def test_nonfinite_loss_skips_the_update_and_stops_with_a_clear_error():
  mesh = train.make_mesh()
  optimizer = optax.adam(0.1)
  state = train.replicate(train.create_state({"w": jnp.ones((3,))}, optimizer, 0), mesh)
  step = train.make_train_step(_quadratic_loss, optimizer, mesh)
  batch = {"x": np.full((2, 3), np.nan, np.float32), "y": np.ones(2, np.float32)}
  state, metrics = step(state, train.global_batch(batch, mesh))
  np.testing.assert_array_equal(state.params["w"], np.ones(3))
  assert int(state.step) == 0
  with pytest.raises(FloatingPointError, match="non-finite loss nan.*step 7"):
    train.check_finite(jax.device_get(metrics), 7)


def test_masked_optimizer_freezes_exactly():
  params = {"item_embedding": {"embedding": jnp.ones((4, 2))}, "dense": {"kernel": jnp.ones((2,))}}
  optimizer = train.masked_optimizer(optax.adam(0.1), lambda path: path[-2:] == (
      "item_embedding", "embedding"))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  np.testing.assert_array_equal(updates["item_embedding"]["embedding"], 0.0)
  assert np.all(np.asarray(updates["dense"]["kernel"]) != 0)


@pytest.mark.parametrize("batch_len", [6, 4, 1])
def test_process_rows_split_a_global_batch_in_equal_padded_shares(monkeypatch, batch_len):
  """Two processes' shares, concatenated, are the global batch padded to a static 6 rows."""
  index = np.array([10, 11, 12, 13, 14, 15])[:batch_len]
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  shares = []
  for process in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda p=process: p)
    shares.append(train.process_rows(index, batch_size=6))
  rows = np.concatenate([r for r, _ in shares])
  weights = np.concatenate([w for _, w in shares])
  np.testing.assert_array_equal(weights, np.arange(6) < batch_len)
  np.testing.assert_array_equal(rows[:batch_len], index)
  np.testing.assert_array_equal(rows[batch_len:], index[0])
  assert weights.dtype == np.float32 and rows.shape == (6,)
  with pytest.raises(ValueError, match="batch_size=5 must be a multiple of the number of processes 2"):
    train.check_batch_size(5)
