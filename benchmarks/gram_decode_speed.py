"""GRAM decoding and training speed: our jit-compiled trie-constrained beam search against Hugging
Face `generate(num_beams=..., prefix_allowed_tokens_fn=...)` on the same weights, same run.

  python -m benchmarks.gram_decode_speed --out=benchmarks/results/gram_decode_speed.md
  python -m benchmarks.gram_decode_speed --users=2 --batch=2 --prompt_len=32 --train_steps=1  # quick

Decoding: random T5 weights at each size (ours, converted to a Hugging Face checkpoint with
gram_jax.hf_convert so both decode the same model), users with `--prompts` prompts of
`--prompt_len` tokens (GRAM: 21 x 128), late fusion as GRAM's official code does it on the
Hugging Face side (encoder on [users * N, L], prompt-position rows added, [users, N * L] passed as
`encoder_outputs`), a synthetic 12,101-item trie shaped like GRAM's Beauty IDs (7 levels of up to
128 clusters, cluster names of 1-2 tokens, suffix tokens on collisions), beam = items returned.
Hugging Face gets a dict-of-dicts trie (GRAM's `generation_trie` kind) for its prefix function and
runs with length_penalty=0, our ranking. Both are timed end to end (encoder included) after one
warm-up batch (our compile); users/second, the ratio, and how often the two agree on the top item
and on the top-10 set are printed.
Training: examples/second of the shared data-parallel step (recsys_core.train) with the seq2seq loss at
each size, `--prompts` x `--prompt_len` inputs, after one compiling step.
Run it on a quiet machine: the load average is printed beside the figures.
"""

import functools
import os
import platform
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np
import optax

from recsys_core import train
from gram_jax import beam_search
from gram_jax import hf_convert
from gram_jax import loss
from gram_jax import t5
from gram_jax import trie as trie_lib

_SIZES = flags.DEFINE_list("sizes", ["tiny", "small"], "T5 sizes (gram_jax.t5.SIZES)")
_BEAMS = flags.DEFINE_list("beams", ["20", "50"], "beam sizes")
_USERS = flags.DEFINE_integer("users", 16, "users decoded per measurement (after a warm-up batch)")
_BATCH = flags.DEFINE_integer("batch", 8, "users per decoding call (both implementations)")
_PROMPTS = flags.DEFINE_integer("prompts", 21, "prompts per user (GRAM: 1 user + 20 items)")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 128, "tokens per prompt")
_ITEMS = flags.DEFINE_integer("items", 12101, "items in the synthetic trie (Beauty: 12,101)")
_HF = flags.DEFINE_bool("hf", True, "also run Hugging Face generate (needs torch + transformers)")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 8, "examples per training step")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "timed training steps (0: skip training)")
_OUT = flags.DEFINE_string("out", "", "also write the markdown report here")


def beauty_like_ids(num_items: int, vocab_size: int, seed: int = 0, depth: int = 7,
                    branching: int = 128) -> list:
  """Synthetic lexical IDs shaped like GRAM's Beauty IDs (c=128, l=7).

  Each level splits a cluster into min(branching, size) sub-clusters with Zipf-like sizes; each
  sub-cluster is named by a 'word' of one token (two with probability .1), distinct among
  siblings; items still sharing a cluster after `depth` levels get a numeric suffix token.
  """
  rng = np.random.default_rng(seed)
  ids = [None] * num_items

  def word():
    return tuple(rng.integers(1000, vocab_size, size=1 + (rng.random() < 0.1)).tolist())

  stack = [(np.arange(num_items), 0, ())]
  while stack:
    members, level, prefix = stack.pop()
    if level == depth:
      for j, item in enumerate(members):
        ids[item] = list(prefix) + ([] if len(members) == 1 else [10 + j])
      continue
    k = min(branching, len(members))
    weights = 1.0 / np.arange(1, k + 1)
    labels = rng.choice(k, size=len(members), p=weights / weights.sum())
    names = set()
    while len(names) < k:
      names.add(word())
    for name, cluster in zip(sorted(names), range(k)):
      inside = members[labels == cluster]
      if len(inside):
        stack.append((inside, level + 1, prefix + name))
  return ids


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def prompts(users: int, seed: int) -> np.ndarray:
  """[users, N, L] random prompts: the user prompt full, item prompts of random lengths."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(2, 32000, size=(users, _PROMPTS.value, _PROMPT_LEN.value))
  lengths = rng.integers(_PROMPT_LEN.value // 3, _PROMPT_LEN.value + 1, size=ids.shape[:2])
  lengths[:, 0] = _PROMPT_LEN.value
  ids[np.arange(_PROMPT_LEN.value)[None, None, :] >= lengths[..., None]] = 0
  return ids.astype(np.int32)


def time_ours(model, params, trie, inputs, beams):
  search = functools.partial(beam_search.constrained_beam_search, model, num_beams=beams)
  device_trie = trie.device()
  batch = _BATCH.value
  start = time.perf_counter()
  jax.block_until_ready(search(params, device_trie, inputs[:batch]))
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  results = [jax.device_get(search(params, device_trie, inputs[i:i + batch]))
             for i in range(0, len(inputs), batch)]
  seconds = time.perf_counter() - start
  return seconds, compile_s, np.concatenate([items for items, _ in results])


def hf_prefix_fn(trie):
  """GRAM-style dict-of-dicts trie for `prefix_allowed_tokens_fn` (sentence = start token + ID)."""
  root = {}
  for sequence, length in zip(trie.sequences, trie.lengths):
    node = root
    for token in sequence[:length].tolist():
      node = node.setdefault(token, {})

  def allowed(batch_id, sentence):
    del batch_id
    node = root
    for token in sentence.tolist()[1:]:
      node = node.get(token)
      if node is None:
        break
    # transformers 5 refuses an empty list: a dead beam (past EOS, or off the trie after a -inf
    # pick) gets pad, keeping its -1e9-penalised score out of the results.
    return list(node) if node else [0]
  return allowed


def time_hf(hf_model, prompt_table, trie, inputs, beams):
  import torch
  from transformers.modeling_outputs import BaseModelOutput
  allowed = hf_prefix_fn(trie)
  lookup = {tuple(s[:n].tolist()): i for i, (s, n) in enumerate(zip(trie.sequences, trie.lengths))}
  table = torch.from_numpy(np.asarray(prompt_table))

  def run(x):
    users, num_prompts, length = x.shape
    ids = torch.from_numpy(x.reshape(users * num_prompts, length)).long()
    mask = (ids != 0).long()
    with torch.no_grad():
      encoded = hf_model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
      encoded = encoded.view(users, num_prompts, length, -1) + table[:num_prompts, None, :]
      out = hf_model.generate(
          encoder_outputs=BaseModelOutput(last_hidden_state=encoded.view(users, -1,
                                                                         encoded.shape[-1])),
          attention_mask=mask.view(users, -1), num_beams=beams, num_return_sequences=beams,
          max_length=trie.max_len + 1, prefix_allowed_tokens_fn=allowed, length_penalty=0.0,
          do_sample=False)
    rows = out[:, 1:].numpy()
    items = [lookup.get(tuple(r[:np.argmax(r == 1) + 1].tolist()) if (r == 1).any() else (), -1)
             for r in rows]
    return np.array(items).reshape(users, beams)

  batch = _BATCH.value
  run(inputs[:1])  # warm-up (allocations, thread pools)
  start = time.perf_counter()
  items = np.concatenate([run(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])
  return time.perf_counter() - start, items


def decode_rows(size, trie, inputs):
  config = t5.t5_config(size)
  model = t5.T5(config)
  params = t5.init_params(model, 0)
  hf_model = None
  if _HF.value:
    import torch
    import transformers
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
      hf_convert.save_checkpoint(folder, config, params)
      hf_model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
  rows = []
  for beams in (int(b) for b in _BEAMS.value):
    ours_s, compile_s, ours_items = time_ours(model, params, trie, inputs, beams)
    assert np.all(ours_items[:, 0] >= 0)
    row = {"size": size, "beams": beams, "ours": len(inputs) / ours_s, "compile_s": compile_s}
    if hf_model is not None:
      hf_s, hf_items = time_hf(hf_model, params["prompt_position"]["embedding"], trie, inputs,
                               beams)
      row.update(hf=len(inputs) / hf_s, ratio=hf_s / ours_s,
                 top1=float(np.mean(hf_items[:, 0] == ours_items[:, 0])),
                 top10=float(np.mean([len(set(a[:10]) & set(b[:10])) / 10
                                      for a, b in zip(hf_items, ours_items)])))
    print(row, flush=True)
    rows.append(row)
  return rows


def train_row(size):
  config = t5.t5_config(size)
  model = t5.T5(config)
  optimizer = optax.adamw(1e-3, weight_decay=0.01)
  mesh = train.make_mesh()
  state = train.replicate(train.create_state(t5.init_params(model, 0), optimizer, 0), mesh)
  step = train.make_train_step(lambda p, b, r: loss.seq2seq_loss(model, p, b, r), optimizer, mesh)
  rng = np.random.default_rng(1)
  labels = rng.integers(2, 32000, size=(_TRAIN_BATCH.value, 10)).astype(np.int32)
  labels[:, 9] = 1
  batch = train.global_batch({"input_ids": prompts(_TRAIN_BATCH.value, 1), "labels": labels},
                             mesh)
  start = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(_TRAIN_STEPS.value):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  row = {"size": size, "examples_per_s": _TRAIN_STEPS.value * _TRAIN_BATCH.value / seconds,
         "step_s": seconds / _TRAIN_STEPS.value, "compile_s": compile_s}
  print(row, flush=True)
  return row


def main(argv):
  del argv
  if _USERS.value % _BATCH.value:
    raise app.UsageError(f"--users={_USERS.value} must be a multiple of --batch={_BATCH.value} "
                         "(one compiled shape)")
  load_before = os.getloadavg()
  ids = beauty_like_ids(_ITEMS.value, 32128)
  suffixed = sum(item_id[-1] < 1000 for item_id in ids)  # words are tokens >= 1000, suffixes < 1000
  trie = trie_lib.build_trie(ids, vocab_size=32128)
  inputs = prompts(_USERS.value, 0)
  decode = [row for size in _SIZES.value for row in decode_rows(size, trie, inputs)]
  training = [train_row(size) for size in _SIZES.value] if _TRAIN_STEPS.value else []
  command = "python -m benchmarks.gram_decode_speed " + " ".join(sys.argv[1:])
  lines = [
      "# GRAM decoding and training speed: trie-constrained beam search against Hugging Face",
      "", f"Generated by `{command.strip()}`.", "",
      f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; "
      f"{jax.devices()[0].device_kind} x {jax.device_count()} ({jax.default_backend()}), jax "
      f"{jax.__version__}; load average before / after: {load_before[0]:.2f} / "
      f"{os.getloadavg()[0]:.2f}", "",
      f"Decoding: {len(inputs)} users, {_PROMPTS.value} prompts x {_PROMPT_LEN.value} tokens each "
      f"(late fusion), {trie.num_items:,} items (ID tokens incl. EOS: mean "
      f"{trie.lengths.mean():.1f}, max {trie.max_len}; largest branching {trie.max_degree}; "
      f"{suffixed} with a collision suffix), "
      f"{_BATCH.value} users per call, random weights, encoder included.", "",
      "| size | beam | ours users/s | Hugging Face users/s | ratio | same top-1 | top-10 overlap "
      "| our compile s |", "|---|---|---|---|---|---|---|---|"]
  for r in decode:
    hf = (f"{r['hf']:.2f} | {r['ratio']:.1f}x | {r['top1']:.0%} | {r['top10']:.0%}"
          if "hf" in r else "- | - | - | -")
    lines.append(f"| {r['size']} | {r['beams']} | {r['ours']:.2f} | {hf} | {r['compile_s']:.1f} |")
  if training:
    lines += ["", f"Training (recsys_core.train step, seq2seq loss, AdamW, dropout .1): batch "
                  f"{_TRAIN_BATCH.value}, {_PROMPTS.value} prompts x {_PROMPT_LEN.value} tokens, "
                  "10 label tokens.", "",
              "| size | examples/s | step s | compile s |", "|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['examples_per_s']:.2f} | {r['step_s']:.2f} | "
              f"{r['compile_s']:.1f} |" for r in training]
  report = "\n".join(lines) + "\n"
  print(report)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(report)


if __name__ == "__main__":
  app.run(main)
