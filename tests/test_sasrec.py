"""seqrec/sasrec.py against an independent numpy float64 transcription of RecBole's SASRec."""

from math import erf, sqrt

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recsys_core import train
from seqrec import sasrec

SMALL = dict(num_items=11, max_len=6, hidden=8, inner=16, num_layers=2, num_heads=2)


def _inputs():
  """[3, 6] right-padded shifted ids: lengths 6, 3, 1."""
  return jnp.array([[3, 5, 1, 11, 2, 7], [4, 4, 9, 0, 0, 0], [8, 0, 0, 0, 0, 0]], jnp.int32)


def _numpy_recbole(params, seq, num_heads, eps=1e-12, temperature=0.0):
  """RecBole SASRec.forward + full_sort_predict in float64 numpy (eval mode: no dropout); with a
  temperature, DWSRec's scores: cosine(state, item row) / temperature."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  dense = lambda x, d: x @ d["kernel"] + d["bias"]
  def norm(x, d):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * d["scale"] + d["bias"]
  gelu = np.vectorize(lambda x: x * 0.5 * (1.0 + erf(x / sqrt(2.0))))
  seq = np.asarray(seq)
  b, n = seq.shape
  table = p["item_embedding"]["embedding"]
  h = norm(table[seq] + p["position_embedding"]["embedding"][:n], p["layer_norm"])
  mask = (seq > 0)[:, None, None, :] * np.tril(np.ones((n, n)))[None, None]
  bias = (1.0 - mask) * -10000.0
  for layer in range(2):
    a = p[f"attention_{layer}"]
    d = h.shape[-1] // num_heads
    split = lambda x: x.reshape(b, n, num_heads, d).transpose(0, 2, 1, 3)
    q, k, v = (split(dense(h, a[name])) for name in ("query", "key", "value"))
    s = q @ k.transpose(0, 1, 3, 2) / sqrt(d) + bias
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
    h = norm(dense(ctx, a["dense"]) + h, a["layer_norm"])
    f = p[f"feed_forward_{layer}"]
    h = norm(dense(gelu(dense(h, f["dense_1"])), f["dense_2"]) + h, f["layer_norm"])
  last = h[np.arange(b), (seq > 0).sum(1) - 1]
  if temperature:
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    return unit(last) @ unit(table).T / temperature
  return last @ table.T


def _perturbed_params(model, seed=0):
  """Init params with every leaf nudged, so biases and LayerNorm parameters are exercised too."""
  params = sasrec.init_params(model, seed)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


def test_scores_match_numpy_recbole_reference():
  model = sasrec.SASRec(**SMALL)
  params = _perturbed_params(model)
  ours = model.apply({"params": params}, _inputs(), method=sasrec.SASRec.scores)
  chex.assert_shape(ours, (3, SMALL["num_items"] + 1))
  np.testing.assert_allclose(ours, _numpy_recbole(params, _inputs(), SMALL["num_heads"]),
                             rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("temperature", [0.07, 1.0])
def test_cosine_scores_match_numpy_reference(temperature):
  model = sasrec.SASRec(**SMALL, score_temperature=temperature)
  params = _perturbed_params(model)
  ours = model.apply({"params": params}, _inputs(), method=sasrec.SASRec.scores)
  np.testing.assert_allclose(ours, _numpy_recbole(params, _inputs(), SMALL["num_heads"],
                                                  temperature=temperature), rtol=2e-4, atol=2e-4)
  assert np.abs(np.asarray(ours)).max() <= 1 / temperature + 1e-4


def test_cosine_scores_with_a_computed_item_table():
  model = sasrec.SASRec(**SMALL, score_temperature=0.07,
                        item_table=_ScaledTable(SMALL["num_items"] + 1, SMALL["hidden"]))
  params = sasrec.init_params(model, 0)
  apply = lambda method: model.apply({"params": params}, _inputs(), method=method)
  state = apply(sasrec.SASRec.__call__)
  table = model.apply({"params": params}, method=sasrec.SASRec.table)
  unit = lambda x: np.asarray(x) / np.linalg.norm(x, axis=-1, keepdims=True)
  np.testing.assert_allclose(apply(sasrec.SASRec.scores), unit(state) @ unit(table).T / 0.07,
                             rtol=1e-4, atol=1e-4)


def test_causal_mask_future_items_do_not_change_past_outputs():
  model = sasrec.SASRec(**SMALL)
  params = _perturbed_params(model)
  seq = _inputs()
  encode = lambda s: model.apply({"params": params}, s, method=sasrec.SASRec.encode)
  changed = seq.at[0, 3].set(6)
  before, after = encode(seq), encode(changed)
  np.testing.assert_array_equal(before[0, :3], after[0, :3])
  assert np.abs(np.asarray(before[0, 3:] - after[0, 3:])).min() > 0
  np.testing.assert_array_equal(before[1:], after[1:])


def test_output_is_the_last_real_position_and_padding_content_is_ignored():
  model = sasrec.SASRec(**SMALL)
  params = _perturbed_params(model)
  seq = _inputs()
  out = model.apply({"params": params}, seq)
  h = model.apply({"params": params}, seq, method=sasrec.SASRec.encode)
  np.testing.assert_array_equal(out, h[jnp.arange(3), jnp.array([5, 2, 0])])
  shorter = model.apply({"params": params}, seq[:, :3])  # fewer padding columns, same outputs
  np.testing.assert_allclose(out[1:], shorter[1:], atol=1e-6)


def test_recbole_initialisation():
  model = sasrec.SASRec(num_items=3000, hidden=64, inner=256)
  params = sasrec.init_params(model, 0)
  table = np.asarray(params["item_embedding"]["embedding"])
  assert table.shape == (3001, 64) and abs(table.std() - 0.02) < 1e-3 and np.any(table[0] != 0)
  assert abs(np.asarray(params["attention_0"]["query"]["kernel"]).std() - 0.02) < 2e-3
  np.testing.assert_array_equal(params["feed_forward_1"]["dense_1"]["bias"], 0.0)
  np.testing.assert_array_equal(params["layer_norm"]["scale"], 1.0)
  with pytest.raises(ValueError, match="multiple of num_heads"):
    sasrec.init_params(sasrec.SASRec(num_items=5, hidden=10, num_heads=3), 0)


def test_item_table_hook_and_frozen_table_gets_zero_updates():
  model = sasrec.SASRec(**SMALL)
  given = np.random.default_rng(0).normal(size=(11, 8)).astype(np.float32)
  params = sasrec.init_params(model, 0, given)
  np.testing.assert_array_equal(params["item_embedding"]["embedding"][1:], given)
  np.testing.assert_array_equal(params["item_embedding"]["embedding"][0],
                                sasrec.init_params(model, 0)["item_embedding"]["embedding"][0])
  with pytest.raises(ValueError, match=r"\(11, 8\)"):
    sasrec.init_params(model, 0, given[:5])

  optimizer = train.masked_optimizer(optax.adam(1e-2), sasrec.is_item_table)
  before = jax.device_get(params)  # the step donates (deletes) the buffers it is given
  mesh = train.make_mesh()
  state = train.replicate(train.create_state(params, optimizer, 0), mesh)
  step = train.make_train_step(lambda p, b, r: sasrec.ce_loss(model, p, b, r), optimizer, mesh)
  batch = {"inputs": np.asarray(_inputs()), "targets": np.array([1, 2, 3], np.int32),
           "weights": np.ones(3, np.float32)}
  for _ in range(2):
    state, _ = step(state, train.global_batch(batch, mesh))
  np.testing.assert_array_equal(state.params["item_embedding"]["embedding"],
                                before["item_embedding"]["embedding"])
  assert np.any(state.params["position_embedding"]["embedding"]
                != before["position_embedding"]["embedding"])


def test_ce_loss_is_full_softmax_and_ignores_weight_zero_rows():
  model = sasrec.SASRec(**SMALL, dropout=0.0, attention_dropout=0.0)
  params = _perturbed_params(model)
  batch = {"inputs": _inputs(), "targets": jnp.array([1, 2, 3], jnp.int32),
           "weights": jnp.array([1.0, 1.0, 0.0])}
  loss, aux = sasrec.ce_loss(model, params, batch, jax.random.PRNGKey(0))
  logits = _numpy_recbole(params, _inputs(), SMALL["num_heads"])[:2]
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  np.testing.assert_allclose(loss, -(logp[0, 1] + logp[1, 2]) / 2, rtol=1e-4)
  assert float(aux["examples"]) == 2.0


def test_parameter_count_equals_recbole_sasrec_on_beauty():
  # RecBole 1.2.1 prints "Trainable parameters: 877824" for SASRec on Beauty (12,101 items + [PAD])
  # with hidden 64, inner 256, 2 layers, max length 50.
  model = sasrec.SASRec(num_items=12101, max_len=50, hidden=64, inner=256)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 50), jnp.int32)))
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)) == 877824


class _ScaledTable(nn.Module):
  """A stand-in initialiser table module: 2 x a free [num_items + 1, hidden] matrix."""
  rows: int
  hidden: int

  @nn.compact
  def __call__(self, deterministic: bool) -> jax.Array:
    del deterministic
    return 2.0 * self.param("base", nn.initializers.normal(0.5), (self.rows, self.hidden))


@pytest.mark.parametrize("table_module", [False, True])
def test_packed_rows_give_the_unpacked_loss_and_gradient(table_module):
  """Several windows per row, each with its own positions and attending only to itself, leave
  loss and gradient unchanged."""
  config = dict(SMALL, dropout=0.0, attention_dropout=0.0)
  if table_module:
    config["item_table"] = _ScaledTable(SMALL["num_items"] + 1, SMALL["hidden"])
  model = sasrec.SASRec(**config)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), _inputs())["params"]
  leaves, tree = jax.tree.flatten(params)                       # nudged: attention matters
  params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(jax.random.PRNGKey(i), x.shape)
                                     for i, x in enumerate(leaves)])
  inputs = np.concatenate([np.asarray(_inputs())] * 2)           # lengths 6, 3, 1, 6, 3, 1
  full = {"inputs": inputs, "targets": np.array([1, 2, 3, 4, 5, 6], np.int32),
          "weights": np.array([1, 1, 1, 1, 1, 0], np.float32)}
  # rows: [w0 (6)], [w1 (3), w2 (1), w5 (1), free], [w3 (6)], [w4 (3), free x 3]
  segments = np.array([[1] * 6, [2, 2, 2, 3, 6, 0], [4] * 6, [5, 5, 5, 0, 0, 0]], np.int32)
  packed = {"inputs": np.array([inputs[0], [4, 4, 9, 8, 8, 0], inputs[3], inputs[1]], np.int32),
            "segments": segments,
            "positions": np.array([range(6), [0, 1, 2, 0, 0, 0], range(6), [0, 1, 2, 0, 0, 0]],
                                  np.int32),
            "last": np.array([5, 8, 9, 17, 20, 10], np.int32),
            "targets": full["targets"], "weights": full["weights"]}
  value = lambda batch: jax.value_and_grad(
      lambda p: sasrec.ce_loss(model, p, batch, jax.random.PRNGKey(1))[0])(params)
  (loss, grads), (packed_loss, packed_grads) = value(full), value(packed)
  np.testing.assert_allclose(packed_loss, loss, rtol=1e-6)
  chex.assert_trees_all_close(packed_grads, grads, atol=1e-6, rtol=1e-5)
  assert float(sasrec.ce_loss(model, params, packed, jax.random.PRNGKey(1))[1]["examples"]) == 5
  # without the segments the windows of a row would see each other: a different loss
  del packed["segments"]
  assert abs(float(value(packed)[0]) - float(loss)) > 1e-2
