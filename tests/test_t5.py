"""gram_jax.t5: late fusion, incremental decoding == full decoding, sizes (dropout: in
tests/test_gram_train.py)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gram_jax import t5


@pytest.fixture(scope="module")
def tiny():
  # one encoder layer (the HF parity test covers deeper stacks), two decoder layers (the cache)
  config = t5.t5_config("tiny", vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                        num_layers=1, num_prompt_positions=4)
  model = t5.T5(config)
  return model, t5.init_params(model, 0)


@functools.lru_cache
def _apply(model):
  """model.apply compiled once per model (eager Flax runs op by op, slowly)."""
  return jax.jit(model.apply, static_argnames=("method", "deterministic", "num_beams"))


def _prompts(seed, shape=(2, 3, 7)):
  rng = np.random.default_rng(seed)
  ids = rng.integers(2, 50, size=shape).astype(np.int32)
  ids[0, -1, 4:] = 0
  ids[-1, -1] = 0  # an empty prompt
  return ids


def test_late_fusion_encodes_each_prompt_alone_and_adds_its_position(tiny):
  model, params = tiny
  apply = _apply(model)
  ids = _prompts(0)
  encoded, mask = apply({"params": params}, ids, method=t5.T5.encode)
  assert encoded.shape == (2, 21, 32) and mask.shape == (2, 21)
  np.testing.assert_array_equal(np.asarray(mask), (ids != 0).reshape(2, 21))
  table = np.asarray(params["prompt_position"]["embedding"])
  for n in range(3):
    alone, _ = apply({"params": params}, ids[:, n:n + 1], method=t5.T5.encode)
    np.testing.assert_allclose(np.asarray(encoded[:, 7 * n:7 * n + 7]),
                               np.asarray(alone) - table[0] + table[n], atol=1e-5)
  # the decoder sees every prompt: changing only the last prompt changes the logits
  changed = ids.copy()
  changed[0, 2, 0] = 3 if ids[0, 2, 0] != 3 else 4
  decoder_input_ids = np.array([[0, 5, 6], [0, 7, 8]], np.int32)
  logits = apply({"params": params}, ids, decoder_input_ids)
  assert not np.allclose(logits[0], apply({"params": params}, changed, decoder_input_ids)[0])
  # padding is invisible: two more pad columns per prompt leave the logits unchanged
  repadded = np.pad(ids, ((0, 0), (0, 0), (0, 2)))
  np.testing.assert_allclose(logits, apply({"params": params}, repadded, decoder_input_ids),
                             atol=1e-5)


def test_without_prompt_positions_the_fusion_is_a_plain_concatenation(tiny):
  model, params = tiny
  plain = t5.T5(dataclasses.replace(model.config, prompt_position_embedding=False))
  plain_params = t5.init_params(plain, 0)
  assert "prompt_position" not in plain_params
  assert plain_params.keys() == {k: v for k, v in params.items() if k != "prompt_position"}.keys()
  ids = _prompts(1)
  encoded, _ = _apply(plain)({"params": plain_params}, ids, method=t5.T5.encode)
  for n in range(3):
    alone, _ = _apply(plain)({"params": plain_params}, ids[:, n:n + 1], method=t5.T5.encode)
    np.testing.assert_allclose(np.asarray(encoded[:, 7 * n:7 * n + 7]), np.asarray(alone),
                               atol=1e-5)
  with pytest.raises(ValueError, match="5 prompts per example but num_prompt_positions=4"):
    plain.apply({"params": plain_params}, _prompts(0, (1, 5, 3)), np.zeros((1, 2), np.int32))

def test_too_many_prompts_is_refused(tiny):
  model, params = tiny
  with pytest.raises(ValueError, match="5 prompts per example but num_prompt_positions=4"):
    model.apply({"params": params}, _prompts(0, (1, 5, 3)), np.zeros((1, 2), np.int32))


def test_incremental_decoding_with_beams_equals_full_decoding(tiny):
  model, params = tiny
  apply = _apply(model)
  variables = {"params": params}
  beams, steps = 3, 5
  encoded, mask = apply(variables, _prompts(1), method=t5.T5.encode)
  rng = np.random.default_rng(2)
  tokens = rng.integers(2, 50, size=(2 * beams, steps)).astype(np.int32)
  tokens[:, 0] = 0
  # reference: every beam decoded on its own copy of its user's encoder output
  full = apply(variables, tokens, np.repeat(encoded, beams, 0), np.repeat(mask, beams, 0),
               method=t5.T5.decode)
  folded = apply(variables, tokens, encoded, mask, num_beams=beams, method=t5.T5.decode)
  np.testing.assert_allclose(np.asarray(folded), np.asarray(full), atol=1e-5)
  cross_kv = apply(variables, encoded, method=t5.T5.cross_key_values)
  cache = t5.init_cache(model.config, 2 * beams, steps + 2)  # longer than needed: slack ignored
  for position in range(steps):
    logits, cache = apply(variables, tokens[:, position], jnp.int32(position), cache, cross_kv,
                          mask, num_beams=beams, method=t5.T5.decode_step)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(full[:, position]), atol=1e-5)


@pytest.mark.parametrize("size,count", [("small", 60_506_624), ("base", 222_903_552)])
def test_sizes_have_the_hugging_face_parameter_counts(size, count):
  # Hugging Face's t5-small / t5-base num_parameters(); ours adds the 21-row prompt table.
  config = t5.t5_config(size)
  shapes = jax.eval_shape(lambda: t5.init_params(t5.T5(config), 0))
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert total == count + 21 * config.d_model
  with pytest.raises(ValueError, match="unknown T5 size 'large'"):
    t5.t5_config("large")
