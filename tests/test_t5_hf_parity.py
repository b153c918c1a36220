"""Parity of gram_jax.t5 with Hugging Face's T5ForConditionalGeneration (PyTorch, CPU, float32).

A small random T5 v1.0 is saved with save_pretrained, loaded by gram_jax.hf_convert, and run on the
same padded inputs. Parity is for plain T5: one prompt per example and no prompt-position table
(`num_prompt_positions=0`), the late-fusion table having no Hugging Face counterpart.
"""

import functools
import json

import jax

import numpy as np
import pytest
import safetensors.numpy

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gram_jax import hf_convert  # noqa: E402
from gram_jax import t5  # noqa: E402

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow

# Encoder 3 layers, decoder 2 (catches a swapped count); max distance 20 with 32 buckets and length
# 40 exercises the logarithmic buckets and the max-distance clip of both directions.
_HF_CONFIG = dict(vocab_size=97, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_decoder_layers=2,
                  num_heads=4, relative_attention_num_buckets=32,
                  relative_attention_max_distance=20, dropout_rate=0.1,
                  feed_forward_proj="relu", decoder_start_token_id=0)


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**_HF_CONFIG)).eval()
  path = tmp_path_factory.mktemp("hf_t5")
  model.save_pretrained(path)
  return model, str(path)


def _inputs():
  rng = np.random.default_rng(0)
  input_ids = rng.integers(2, 97, size=(3, 40))
  lengths = np.array([40, 23, 5])
  input_ids[np.arange(40)[None, :] >= lengths[:, None]] = 0
  decoder_input_ids = rng.integers(2, 97, size=(3, 9))
  decoder_input_ids[:, 0] = 0
  return input_ids, decoder_input_ids


def test_encoder_outputs_and_logits_match_hugging_face(hf_checkpoint):
  model, path = hf_checkpoint
  config, params = hf_convert.load_checkpoint(path)
  assert config.num_prompt_positions == 0 and config.num_decoder_layers == 2
  input_ids, decoder_input_ids = _inputs()
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(input_ids),
                attention_mask=torch.from_numpy((input_ids != 0).astype(np.int64)),
                decoder_input_ids=torch.from_numpy(decoder_input_ids))
  ours = t5.T5(config)
  encoded, mask = jax.jit(functools.partial(ours.apply, method=t5.T5.encode))(
      {"params": params}, input_ids[:, None])
  logits = jax.jit(ours.apply)({"params": params}, input_ids[:, None], decoder_input_ids)
  enc_diff = np.abs(np.asarray(encoded) - out.encoder_last_hidden_state.numpy()).max()
  logit_diff = np.abs(np.asarray(logits) - out.logits.numpy()).max()
  print(f"max abs diff vs Hugging Face T5: encoder output {enc_diff:.2e}, logits {logit_diff:.2e}")
  np.testing.assert_array_equal(np.asarray(mask), input_ids != 0)
  assert enc_diff <= 1e-4 and logit_diff <= 1e-4


def test_position_buckets_match_hugging_face():
  relative = np.arange(-300, 301)
  bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
  for bidirectional in (True, False):
    for num_buckets, max_distance in ((32, 128), (32, 20), (16, 64)):
      theirs = bucket(torch.from_numpy(relative), bidirectional, num_buckets, max_distance).numpy()
      ours = t5.relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
      np.testing.assert_array_equal(ours, theirs)


def test_params_convert_back_to_the_same_hugging_face_model(hf_checkpoint, tmp_path):
  model, path = hf_checkpoint
  config, params = hf_convert.load_checkpoint(path, num_prompt_positions=4)
  assert params["prompt_position"]["embedding"].shape == (4, 32)
  hf_convert.save_checkpoint(str(tmp_path), config, params)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["num_decoder_layers"] == 2
  again = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  theirs = model.state_dict()
  for name, value in again.state_dict().items():
    np.testing.assert_array_equal(value.numpy(), theirs[name].numpy(), err_msg=name)


def test_unexpected_weights_are_refused(hf_checkpoint):
  _, path = hf_checkpoint
  config, _ = hf_convert.load_checkpoint(path)
  state = safetensors.numpy.load_file(f"{path}/model.safetensors")
  state["encoder.block.3.layer.0.SelfAttention.q.weight"] = np.zeros((32, 32), np.float32)
  with pytest.raises(ValueError, match="has encoder.block.3.layer.0.SelfAttention.q.weight"):
    hf_convert.params_from_state_dict(config, state)
  del state["encoder.block.3.layer.0.SelfAttention.q.weight"]
  state["decoder.block.1.layer.2.DenseReluDense.wi.weight"] = np.zeros((32, 48), np.float32)
  with pytest.raises(ValueError, match=r"wi.weight has shape \(32, 48\) but config.json implies "
                                       r"\(48, 32\)"):
    hf_convert.params_from_state_dict(config, state)


def test_v11_checkpoints_are_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({**_HF_CONFIG,
                                                    "feed_forward_proj": "gated-gelu"}))
  with pytest.raises(ValueError, match="only T5 v1.0"):
    hf_convert.load_checkpoint(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf_convert.load_checkpoint(str(tmp_path / "missing"))
