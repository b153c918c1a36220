"""Hugging Face T5 checkpoints <-> our parameters (numpy; no torch needed).

A checkpoint directory holds `config.json` and `model.safetensors` (or shards listed in
`model.safetensors.index.json`), as `save_pretrained` writes them for T5ForConditionalGeneration.
Only T5 v1.0 (t5-small, t5-base: ReLU feed-forward, tied embeddings) matches our architecture;
v1.1 / flan-t5 (gated-GELU, untied output layer) is refused. Torch `nn.Linear` weights are
[out, in]; Flax kernels are [in, out]. The late-fusion prompt-position table has no Hugging Face
counterpart: `load_checkpoint` initialises it (std 0.02) and `save_checkpoint` leaves it out.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from safetensors.numpy import load_file, save_file

from gram_jax import t5
from recsys_core.errors import DataError, MissingFileError

# Tied copies of shared.weight, and a cross-attention position table old checkpoints carry that
# T5 never uses (Hugging Face ignores it too).
_IGNORED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight",
            "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")
_CONFIG_KEYS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
                "num_heads", "relative_attention_num_buckets", "relative_attention_max_distance",
                "dropout_rate", "layer_norm_epsilon", "pad_token_id", "eos_token_id")


def config_from_hf(hf_config: dict, num_prompt_positions: int = 0) -> t5.T5Config:
  """Our T5Config from the dict of a Hugging Face `config.json` (DataError if it is not a T5 v1.0)."""
  if not isinstance(hf_config, dict):
    raise DataError(f"expected a JSON object, got {type(hf_config).__name__}")
  if hf_config.get("feed_forward_proj", "relu") != "relu" or hf_config.get(
      "tie_word_embeddings", True) is False:
    raise DataError("only T5 v1.0 checkpoints (feed_forward_proj='relu', tied embeddings, e.g. "
                     "t5-small, t5-base) match this model; got feed_forward_proj="
                     f"{hf_config.get('feed_forward_proj')!r}, tie_word_embeddings="
                     f"{hf_config.get('tie_word_embeddings')!r}")
  values = {key: hf_config[key] for key in _CONFIG_KEYS if hf_config.get(key) is not None}
  for key, value in values.items():
    floating = key in ("dropout_rate", "layer_norm_epsilon")
    if isinstance(value, bool) or not isinstance(value, (int, float) if floating else int):
      raise DataError(f"{key}={value!r} is not {'a number' if floating else 'an integer'}")
  values.setdefault("num_decoder_layers", values.get("num_layers", t5.T5Config.num_layers))
  return t5.T5Config(**values, num_prompt_positions=num_prompt_positions)


def config_to_hf(config: t5.T5Config) -> dict:
  """The `config.json` dict of a T5ForConditionalGeneration with our sizes."""
  values = {key: getattr(config, key) for key in _CONFIG_KEYS}
  return {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
          "feed_forward_proj": "relu", "tie_word_embeddings": True, "is_encoder_decoder": True,
          "decoder_start_token_id": config.pad_token_id, "initializer_factor": 1.0, **values}


def _name_map(config: t5.T5Config) -> dict[tuple, str]:
  """Our parameter key path -> Hugging Face state-dict name (Dense kernels are transposed)."""
  names = {("shared", "embedding"): "shared.weight"}
  attention = lambda ours, theirs: {(*ours, p, "kernel"): f"{theirs}.{p}.weight"
                                    for p in ("q", "k", "v", "o")}
  for stack, layers in (("encoder", config.num_layers), ("decoder", config.num_decoder_layers)):
    names[(stack, "relative_attention_bias", "embedding")] = (
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    names[(stack, "final_norm", "scale")] = f"{stack}.final_layer_norm.weight"
    for i in range(layers):
      ours, theirs = (stack, f"block_{i}"), f"{stack}.block.{i}.layer"
      ff = 2 if stack == "decoder" else 1
      names.update(attention((*ours, "self_attention"), f"{theirs}.0.SelfAttention"))
      names[(*ours, "self_attention_norm", "scale")] = f"{theirs}.0.layer_norm.weight"
      if stack == "decoder":
        names.update(attention((*ours, "cross_attention"), f"{theirs}.1.EncDecAttention"))
        names[(*ours, "cross_attention_norm", "scale")] = f"{theirs}.1.layer_norm.weight"
      for p in ("wi", "wo"):
        names[(*ours, "feed_forward", p, "kernel")] = f"{theirs}.{ff}.DenseReluDense.{p}.weight"
      names[(*ours, "feed_forward_norm", "scale")] = f"{theirs}.{ff}.layer_norm.weight"
  return names


def params_from_state_dict(config: t5.T5Config, state: dict[str, np.ndarray],
                           seed: int = 0) -> dict:
  """Our parameter tree from a Hugging Face T5 state dict of numpy arrays.

  Raises:
    DataError (a ValueError): a weight is missing, unexpected or of the wrong shape (names it).
  """
  state = dict(state)
  if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
    state["shared.weight"] = state["encoder.embed_tokens.weight"]
  names = _name_map(config)
  unexpected = sorted(set(state) - set(names.values()) - set(_IGNORED))
  if unexpected:
    raise DataError(f"the checkpoint has {unexpected[0]} (and {len(unexpected) - 1} more weights) "
                     "that a T5 v1.0 of its config.json lacks")
  template = jax.eval_shape(lambda: t5.init_params(t5.T5(config), seed))
  params = {}
  for path, name in names.items():
    if name not in state:
      raise DataError(f"the checkpoint lacks {name} (is it a T5ForConditionalGeneration with "
                       f"{config.num_layers}+{config.num_decoder_layers} layers?)")
    value = np.asarray(state[name], np.float32)
    kernel = path[-1] == "kernel"
    want = _get(template, path).shape[::-1 if kernel else 1]  # torch Linear: [out, in]
    if value.shape != want:
      raise DataError(f"{name} has shape {value.shape} but config.json implies {want}")
    _set(params, path, value.T if kernel else value)
  if config.num_prompt_positions and config.prompt_position_embedding:
    table = 0.02 * jax.random.normal(jax.random.PRNGKey(seed),
                                     (config.num_prompt_positions, config.d_model))
    _set(params, ("prompt_position", "embedding"), np.asarray(table, np.float32))
  return params


def state_dict_from_params(config: t5.T5Config, params: Any) -> dict[str, np.ndarray]:
  """Hugging Face state dict (numpy float32) of our parameters, without the prompt-position table
  (no Hugging Face counterpart) and, as save_pretrained writes it, without the tied copies of
  shared.weight (lm_head, encoder/decoder embed_tokens)."""
  state = {}
  for path, name in _name_map(config).items():
    value = np.asarray(_get(params, path), np.float32)
    state[name] = np.ascontiguousarray(value.T if path[-1] == "kernel" else value)
  return state


def load_checkpoint(directory: str, num_prompt_positions: int = 0, seed: int = 0) -> tuple:
  """(T5Config, params) from a Hugging Face T5 checkpoint directory.

  Args:
    directory: holds config.json and model.safetensors (or model.safetensors.index.json + shards).
    num_prompt_positions: rows of the late-fusion table to add (initialised with `seed`); 0 for
      plain T5.
  """
  config_path = os.path.join(directory, "config.json")
  if not os.path.isfile(config_path):
    raise MissingFileError(f"{config_path}: no config.json; point config.model.hf_checkpoint at a "
                           "directory written by save_pretrained (config.json + model.safetensors)")
  try:
    with open(config_path, "rb") as f:
      config = config_from_hf(json.loads(f.read()), num_prompt_positions)
  except DataError as e:  # not a T5 v1.0
    raise DataError(f"{config_path}: {e}") from None
  except ValueError as e:  # bad JSON or bad UTF-8
    raise DataError(f"{config_path}: not a readable config.json ({e}); point "
                    "config.model.hf_checkpoint at a directory written by save_pretrained") from None
  state, weights = _read_safetensors(directory)
  try:
    return config, params_from_state_dict(config, state, seed)
  except DataError as e:
    raise DataError(f"{weights}: {e}") from None


def save_checkpoint(directory: str, config: t5.T5Config, params: Any) -> None:
  """Write config.json + model.safetensors that T5ForConditionalGeneration.from_pretrained reads."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config_to_hf(config), f, indent=2)
  save_file(state_dict_from_params(config, params), os.path.join(directory, "model.safetensors"),
            metadata={"format": "pt"})


def _load_file(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise MissingFileError(f"{path}: no such shard (listed in model.safetensors.index.json); "
                           "copy the whole checkpoint directory")
  try:
    return load_file(path)
  except Exception as e:  # safetensors raises its own error types on a bad header
    raise DataError(f"{path}: not a readable .safetensors file ({e}); a truncated download?"
                    ) from None


def _read_safetensors(directory: str) -> tuple[dict[str, np.ndarray], str]:
  """(state dict, the file it was read from: model.safetensors or the shard index)."""
  single = os.path.join(directory, "model.safetensors")
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.isfile(single):
    return _load_file(single), single
  if os.path.isfile(index):
    try:
      with open(index, "rb") as f:
        shards = sorted(set(json.loads(f.read())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise DataError(f"{index}: not a shard index with a 'weight_map' ({e!r})") from None
    state = {}
    for shard in shards:
      state.update(_load_file(os.path.join(directory, shard)))
    return state, index
  raise MissingFileError(f"{single}: no model.safetensors (nor an index of shards) in the "
                         "checkpoint directory; convert a pytorch_model.bin with save_pretrained("
                         "..., safe_serialization=True)")


def _get(tree: Any, path: tuple) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple, value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value
