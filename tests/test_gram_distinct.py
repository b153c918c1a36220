"""Distinct-prompt encoding (each item prompt of a batch group encoded once, gram_jax/t5.py), prefix
grouping (gram_jax/batching.py) and the bfloat16 option: the distinct path gives the plain path's
loss, gradients and beam-search results (dropout off)."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gram_jax import batching
from gram_jax import beam_search
from gram_jax import data
from gram_jax import loss
from gram_jax import prompts
from gram_jax import t5
from gram_jax.tokenizer import train_sentencepiece
from gram_jax.trie import build_trie
from recsys_core.errors import ConfigError
from recsys_core.item_text import item_texts
from recsys_core.synthetic import make_synthetic

NUM_FINE, BATCH = 4, 8


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_setup(folder: str) -> tuple:
  """(training examples, eval examples, tokenizer, lexical ids) of a small synthetic dataset whose
  users have long histories (many shared prompts between consecutive prefixes)."""
  ds = make_synthetic(num_users=30, num_items=80, num_clusters=3, mean_length=9)
  texts = item_texts(ds, lowercase=True)
  path = os.path.join(folder, "sp.model")
  tok = train_sentencepiece(prompts.tokenizer_corpus(texts), path, 150)
  ids = [("▁item", str(i % 9), str(i // 9)) for i in range(ds.num_items)]
  tok = tok.with_words(w for i in ids for w in i)
  tables = data.build_tables(ids, texts, tok, prompt_len=12)
  return (data.train_examples(ds, tables, max_his=6), data.eval_examples(ds, tables, "test", 6),
          tok, ids)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return build_setup(str(tmp_path_factory.mktemp("tok")))


def tiny_model(vocab_size: int, **overrides) -> t5.T5:
  config = dict(vocab_size=vocab_size, d_model=16, d_kv=4, d_ff=32, num_heads=4, num_layers=1,
                num_decoder_layers=1, num_prompt_positions=1 + NUM_FINE, dropout_rate=0.0)
  return t5.T5(t5.t5_config("tiny", **{**config, **overrides}))


def plain_prompts(distinct: dict) -> np.ndarray:
  """[b, N, L] prompts rebuilt from a distinct-prompt batch (absent prompts all pad)."""
  users, items, index = (distinct[k] for k in t5.DISTINCT_KEYS)
  groups, rows = items.shape[0], len(users) // items.shape[0]
  group = np.repeat(np.arange(groups), rows)[:, None]
  fine = np.where(index[..., None] >= 0, items[group, np.maximum(index, 0)], 0)
  return np.concatenate([users[:, None], fine], axis=1)


def test_distinct_inputs_hold_each_prompt_once_and_rebuild_the_batch(setup):
  train, _, _, _ = setup
  batches = batching.PromptBatches(train, BATCH, 0, NUM_FINE, (1, 2), group_prefixes=True)
  for bucket, index in batches.plan(0)[:6]:
    n = 1 + batches.bounds[bucket]
    rows, _ = batching.train.pad_rows(index, BATCH)
    plain = batching.model_inputs(train, rows, n)
    for groups in (1, 2):
      distinct = batching.distinct_inputs(train, rows, n, groups)
      np.testing.assert_array_equal(plain_prompts(distinct), plain["input_ids"])
      np.testing.assert_array_equal(distinct["labels"], plain["labels"])
      items = distinct["item_prompts"]
      assert items.shape[:2] == (groups, batching.unique_size(
          max(len(np.unique(i[i >= 0])) for i in distinct["prompt_index"].reshape(groups, -1)),
          BATCH // groups * (n - 1)))
      for g in range(groups):  # each group's real rows are distinct prompts
        real = items[g][(items[g] != 0).any(axis=1)]
        assert len(np.unique(real, axis=0)) == len(real)
      # A share of whole groups (a process's rows) is that slice of the whole batch.
      if groups == 2:
        half = batching.distinct_inputs(train, rows, n, groups, slice(BATCH // 2, BATCH))
        for key in ("user_prompts", "prompt_index", "labels"):
          np.testing.assert_array_equal(half[key], distinct[key][BATCH // 2:])
        np.testing.assert_array_equal(half["item_prompts"], items[1:])
  assert [batching.unique_size(c, 100) for c in (0, 1, 7, 8, 9, 15, 16, 17, 65, 90)] == [
      1, 1, 7, 8, 9, 15, 16, 18, 72, 96]
  assert batching.unique_size(90, 80) == 80


def test_grouped_prefixes_cover_each_example_once_user_by_user(setup):
  train, _, _, _ = setup
  grouped = batching.PromptBatches(train, BATCH, 0, NUM_FINE, (1, 2), group_prefixes=True)
  plain = batching.PromptBatches(train, BATCH, 0, NUM_FINE, (1, 2))
  plan = grouped.plan(0)
  assert len(plan) == grouped.num_batches == plain.num_batches
  np.testing.assert_array_equal(np.sort(np.concatenate([i for _, i in plan])),
                                np.arange(len(train)))
  order = [i for _, i in sorted(plan, key=lambda p: p[1][0])]  # any batch: users contiguous
  for index in order:
    users = train.users[index]
    assert (np.diff(index)[users[1:] == users[:-1]] > 0).all()  # a user's prefixes in time order
    assert len(np.unique(users)) == 1 + (np.diff(users) != 0).sum()
  assert [i.tolist() for _, i in grouped.plan(1)] != [i.tolist() for _, i in plan]
  # grouping is what makes the distinct prompts few
  def mean_distinct(batches):
    hist = [train.histories(i)[:, :NUM_FINE] for _, i in batches.plan(0)]
    return np.mean([len(np.unique(h[h >= 0])) for h in hist])
  assert mean_distinct(grouped) < 0.7 * mean_distinct(plain)


def _loss(model):
  return lambda p, b: loss.seq2seq_loss(model, p, b, jax.random.PRNGKey(0))[0]


@functools.lru_cache
def _loss_and_grad(model):
  return jax.jit(jax.value_and_grad(_loss(model)))


def _train_batch(train, **kw):
  """(plain, distinct) host batch of grouped epoch 0: the short one (padded with weight-0 rows)."""
  plain = batching.PromptBatches(train, BATCH, 0, NUM_FINE, group_prefixes=True)
  distinct = batching.PromptBatches(train, BATCH, 0, NUM_FINE, group_prefixes=True,
                                    distinct_prompts=True, **kw)
  short = next(k for k, (_, i) in enumerate(plain.plan(0)) if len(i) < BATCH)
  return next(plain.epoch(0, short)), next(distinct.epoch(0, short))


def test_distinct_path_gives_the_plain_loss_and_gradients(setup):
  train, _, tok, _ = setup
  model = tiny_model(tok.vocab_size)
  params = t5.init_params(model, 0)
  fn = _loss_and_grad(model)
  plain, distinct = _train_batch(train, num_groups=2)
  np.testing.assert_array_equal(plain["weights"], distinct["weights"])
  assert 0 < plain["weights"].sum() < BATCH
  (la, ga), (lb, gb) = fn(params, plain), fn(params, distinct)
  np.testing.assert_allclose(float(lb), float(la), atol=1e-5, rtol=0)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5, rtol=1e-5), gb, ga)


@pytest.mark.slow  # the opt-in path's secondary checks run in CI's second step
def test_distinct_memory_equals_the_plain_one_without_prompt_positions(setup):
  train, _, tok, _ = setup
  model = tiny_model(tok.vocab_size, prompt_position_embedding=False)
  fuse = jax.jit(functools.partial(model.apply, method=t5.T5.late_fusion))
  variables = {"params": t5.init_params(model, 0)}
  plain, distinct = _train_batch(train)
  kv, mask = fuse(variables, loss.prompts_of(plain))
  got_kv, got_mask = fuse(variables, loss.prompts_of(distinct))
  np.testing.assert_array_equal(got_mask, mask)
  real = np.asarray(mask)[..., None, None]  # absent prompts' keys and values are never attended
  for (k, v), (got_k, got_v) in zip(kv, got_kv):
    np.testing.assert_allclose(np.where(real, got_k, 0), np.where(real, k, 0), atol=1e-5)
    np.testing.assert_allclose(np.where(real, got_v, 0), np.where(real, v, 0), atol=1e-5)


@pytest.mark.slow  # the opt-in path's secondary checks run in CI's second step
def test_beam_search_on_distinct_prompts_equals_plain(setup):
  _, test, tok, ids = setup
  model = tiny_model(tok.vocab_size)
  params = t5.init_params(model, 1)
  trie = build_trie([tok.word_ids(w) for w in ids], tok.eos_id, tok.pad_id,
                    tok.vocab_size).device()
  search = functools.partial(beam_search.constrained_beam_search, model, num_beams=5)
  index, input_ids = next(batching.eval_batches(test, 16, NUM_FINE))
  same, inputs = next(batching.eval_batches(test, 16, NUM_FINE, distinct_prompts=True,
                                            num_groups=2))
  np.testing.assert_array_equal(index, same)
  assert set(inputs) == set(t5.DISTINCT_KEYS)
  assert inputs["item_prompts"].shape[0] == 2
  items, scores = search(params, trie, input_ids)
  got_items, got_scores = search(params, trie, inputs)
  np.testing.assert_allclose(np.asarray(got_scores), np.asarray(scores), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(got_items), np.asarray(items))


@pytest.mark.slow  # the opt-in path's secondary checks run in CI's second step
def test_bfloat16_products_keep_float32_parameters_and_loss(setup):
  train, _, tok, _ = setup
  batch = _train_batch(train, num_groups=2)[1]
  f32 = tiny_model(tok.vocab_size)
  bf16 = tiny_model(tok.vocab_size, dtype="bfloat16")
  params = t5.init_params(bf16, 0)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  l32, _ = _loss_and_grad(f32)(params, batch)
  l16 = jax.jit(_loss(bf16))(params, batch)
  grads = jax.eval_shape(jax.grad(_loss(bf16)), params, batch)
  assert l16.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(float(l16), float(l32), rtol=2e-2)
  assert t5.init_cache(bf16.config, 2, 3)["k"].dtype == jnp.bfloat16
  with pytest.raises(ConfigError, match="dtype='float16'"):
    t5.t5_config("tiny", dtype="float16")


# Runs in a fresh process with 8 fake CPU devices: two AdamW steps (dropout off) of the plain path
# on one device and of the distinct path on 8, one group of item prompts per device.
_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    import jax, numpy as np, optax
    from recsys_core import train
    from gram_jax import batching, loss, t5
    from tests.test_gram_distinct import build_setup, tiny_model, NUM_FINE
    assert jax.device_count() == 8, jax.devices()
    examples, _, tok, _ = build_setup(tempfile.mkdtemp())
    model = tiny_model(tok.vocab_size)
    optimizer = optax.adamw(1e-3, weight_decay=0.01)
    step_fn = lambda p, b, r: loss.seq2seq_loss(model, p, b, r)
    out = {}
    for name, devices, distinct in (("plain", jax.devices()[:1], False),
                                    ("distinct", jax.devices(), True)):
      mesh = train.make_mesh(devices)
      batches = batching.PromptBatches(examples, 16, 0, NUM_FINE, group_prefixes=True,
                                       distinct_prompts=distinct, num_groups=len(devices))
      state = train.replicate(train.create_state(t5.init_params(model, 0), optimizer, 0), mesh)
      step = train.make_train_step(step_fn, optimizer, mesh)
      losses = []
      for batch, _ in zip(batches.epoch(0), range(2)):
        state, metrics = step(state, train.global_batch(batch, mesh))
        losses.append(float(metrics["loss"]))
      out[name] = (jax.device_get(state.params), losses)
    diff = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), out["plain"][0],
                        out["distinct"][0])
    print(json.dumps({"max_diff": max(jax.tree.leaves(diff)), "plain": out["plain"][1],
                      "distinct": out["distinct"][1]}))
""")


@pytest.mark.slow  # a fresh process: ~20 s of CPU, most of it compiling
def test_distinct_path_on_8_devices_equals_the_plain_path_on_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["max_diff"] < 1e-5, out
  np.testing.assert_allclose(out["distinct"], out["plain"], atol=1e-5)


def test_distinct_batches_refuse_groups_that_do_not_divide_the_batch(setup):
  train, _, _, _ = setup
  with pytest.raises(ConfigError, match="must split into 3 groups"):
    batching.PromptBatches(train, BATCH, 0, NUM_FINE, distinct_prompts=True, num_groups=3)
  with pytest.raises(ValueError, match="do not split into 3 groups"):
    batching.distinct_inputs(train, np.arange(BATCH), 2, 3)
