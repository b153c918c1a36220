"""GRAM's training and evaluation data equal what the official code builds from the same files.

Issue #36, point 4. On Beauty with the authors' released IDs
(`item_generative_indexing_hierarchy_v1_c128_l7_len32768_split.txt`) and neighbours
(`similar_item_sasrec.txt`), and the paper-scale settings of configs/gram.py:amazon_beauty_paper
(max_his 20, 20 item prompts, 128 tokens per prompt, 10 neighbours), our pipeline
(gram_jax/run.py's helpers -> gram_jax/data.py tables and examples -> `GramExamples.batch`, the
rows every batching path gathers from; gram_jax/trie.py) is compared with tests/gram_official.py, a
transcription of the official rules, for the users of the FIRST 200 LINES of user_sequence.txt:
every training example (keys (user, target position), user prompt, item prompts in order, their
neighbours, target ID), every validation and test example, and the trie of all 12,101 items.

Why text: the official model reads T5 tokens of a prompt string with the "|" tokens dropped; ours
reads tokens of our own (trained) SentencePiece vocabulary with the ID words looked up. The token
ids of the two vocabularies cannot be compared (T5's vocabulary is not available here), but the text
those tokens spell can: our token rows are decoded piece by piece ("▁" read as a space, never
re-normalised, so a stray word-start token shows as a double space), the official strings are put
through `gram_official.model_view`. The ID words and targets are compared piece by piece (one
piece per ID word in both vocabularies). Truncation is checked as a rule on our own tokens: the
128-token row equals the official truncation of the untruncated row (tables built a second time
with WIDE tokens per prompt).

The item text itself is not compared: the official `item_plain_text.txt` is not released, so our
item text stands in for it on the official side (see benchmarks/results/gram.md, "Parity with the
official pipeline").

Item prompts once differed in two places, now tested equal: text glued to a preceding ID (`|ren;
similar`) is tokenised without a word start (`ren` `;`, not `▁;`), and the "|" of the item text is
dropped as the official collator drops every "|" token.
"""

import os
import types

import numpy as np
import pytest

from configs import gram as gram_config
from gram_jax import data
from gram_jax import run as gram_run
from gram_jax.trie import build_trie
from recsys_core import readers
from tests import gram_official as official

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow

NUM_USERS = 200  # the first 200 lines of user_sequence.txt
WIDE = 512       # tokens per prompt of the untruncated tables (Beauty's longest prompt: ~300)


# --- the two pipelines --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def beauty(data_dir, tmp_path_factory):
  folder = os.path.join(data_dir, "amazon_beauty")
  if not os.path.isfile(os.path.join(folder, "similar_item_sasrec.txt")):
    pytest.skip(f"{folder}: no GRAM release files")
  config = gram_config.get_config("amazon_beauty_paper")
  config.data_dir = data_dir
  config.ids.source = "authors"  # the preset builds our own IDs; parity needs the released ones
  ds = readers.load_dataset(config.dataset, data_dir)
  texts = gram_run.texts_of(ds)
  tokenizer, ids, _ = gram_run.tokenizer_and_ids(config, ds, texts,
                                                 str(tmp_path_factory.mktemp("gram_parity")))
  neighbours = gram_run.item_neighbours(config, ds)
  build = lambda length: data.build_tables(ids, texts, tokenizer, neighbours,
                                           config.num_neighbours, length)
  ours = types.SimpleNamespace(config=config, ds=ds, tokenizer=tokenizer, ids=ids,
                               neighbours=neighbours, tables=build(config.prompt_len),
                               wide=build(WIDE))
  item2lexid = official.item_lexical_ids(folder)
  cf_items = official.similar_items(folder)
  item_text = dict(zip(ds.item_ids, texts))  # the stand-in for item_plain_text.txt
  theirs = types.SimpleNamespace(
      seqs=official.user_sequences(folder, NUM_USERS), item2lexid=item2lexid, cf_items=cf_items,
      item2input=official.item_inputs(item2lexid, cf_items, item_text))
  return ours, theirs


class _Reader:
  """Token rows -> (token ids before EOS, their text); checks the row layout on the way."""

  def __init__(self, tokenizer):
    self.tok = tokenizer
    self._cache = {}

  def tokens(self, row: np.ndarray) -> list[int]:
    row = np.asarray(row)
    ends = np.flatnonzero(row == self.tok.eos_id)
    assert len(ends), "row without EOS"
    body, tail = row[:ends[0]], row[ends[0] + 1:]
    assert (tail == self.tok.pad_id).all(), "tokens after EOS"
    assert not np.isin(body, [self.tok.pad_id, self.tok.unk_id]).any(), "pad/unk before EOS"
    return body.tolist()

  def text(self, row: np.ndarray) -> str:
    key = np.asarray(row).tobytes()
    if key not in self._cache:
      pieces = [self.tok.token(t) for t in self.tokens(row)]
      self._cache[key] = "".join(pieces).replace("\u2581", " ").strip()
    return self._cache[key]

  def pieces(self, row: np.ndarray) -> list[str]:
    return [self.tok.token(t) for t in self.tokens(row)]


def _compare(ours, examples, wide_examples, index, samples) -> list[str]:
  """Mismatches between our examples `index` and the official samples (same order)."""
  reader = _Reader(ours.tokenizer)
  prompt_len = ours.config.prompt_len
  batch = examples.batch(index)
  wide = wide_examples.batch(index)
  errors = []
  for k, s in enumerate(samples):
    where = f"user {s['user']} target {s['target']}"
    if ours.ds.item_ids[batch["target_item"][k]] != s["target"]:
      errors.append(f"{where}: our target {ours.ds.item_ids[batch['target_item'][k]]}")
      continue
    # the target: official ID words + EOS (Collator.py L281-340), pad-padded
    if reader.pieces(batch["labels"][k]) != official.id_words(s["output"]):
      errors.append(f"{where}: labels {reader.pieces(batch['labels'][k])} != {s['output']}")
    n = len(s["inputs"])  # the user prompt + one item prompt per history item (<= 20)
    mask = batch["prompt_mask"][k]
    if n > len(mask) or mask[:n].tolist() != [True] * n or mask[n:].any():
      errors.append(f"{where}: prompt mask {mask.astype(int).tolist()} for {n} prompts")
      continue
    if (batch["input_ids"][k, n:] != ours.tokenizer.pad_id).any():
      errors.append(f"{where}: absent prompts are not all padding")
    for p, prompt in enumerate(s["inputs"]):
      wide_row = wide["input_ids"][k, p]
      if wide_row[-1] != ours.tokenizer.pad_id:
        errors.append(f"{where} prompt {p}: longer than WIDE={WIDE} tokens")
        continue
      got, want = reader.text(wide_row), official.model_view(prompt)
      if got != want:
        errors.append(f"{where} prompt {p}:\n  ours     {got!r}\n  official {want!r}")
      truncated = official.truncate(reader.tokens(wide_row), prompt_len,
                                    ours.tokenizer.eos_id, ours.tokenizer.pad_id)
      if batch["input_ids"][k, p].tolist() != truncated:
        errors.append(f"{where} prompt {p}: the {prompt_len}-token row is not the official "
                      "truncation of the untruncated one")
  return errors


def _report(errors: list[str], what: str) -> str:
  return f"{len(errors)} {what} mismatches, e.g.\n" + "\n".join(errors[:5])


# --- tests --------------------------------------------------------------------------------------

def test_paper_preset_has_the_official_settings():
  """configs/gram.py:amazon_beauty_paper against command/train_gram_beauty.sh + src/arguments.py."""
  c, a = gram_config.get_config("amazon_beauty_paper"), official.BEAUTY_ARGS
  assert c.max_his == a["max_his"]
  # every history item gets an item prompt: Collator.py L348-350 allows min(1 + h, max_his) + 1
  assert c.num_fine == a["max_his"] and c.item_prompts
  assert c.prompt_len == a["item_prompt_max_len"]
  assert (c.neighbours, c.num_neighbours) == ("authors", a["top_k_similar_item"])
  assert f"_c{c.ids.num_clusters}_l{c.ids.depth}_" in a["hierarchical_id_type"]
  assert c.batch_size == a["rec_batch_size"] * a["gradient_accumulation_steps"] * a["num_gpus"]
  assert (c.learning_rate, c.epochs, c.eval_every_epochs) == (
      a["rec_lr"], a["rec_epochs"], a["test_epoch_rec"])
  assert (c.clip_norm, c.warmup_fraction, c.weight_decay, c.adam_eps) == (
      a["clip"], a["warmup_prop"], a["weight_decay"], a["adam_eps"])
  assert (c.num_beams, c.length_penalty) == (a["beam_size"], a["length_penalty"])


def test_sequences_ids_and_neighbours_match_official(beauty):
  ours, theirs = beauty
  ds = ours.ds
  dense = {a: i for i, a in enumerate(ds.user_ids)}
  for user, seq in theirs.seqs.items():
    assert ds.item_ids[ds.sequence(dense[user])].tolist() == seq, user
  assert sorted(ds.item_ids) == sorted(theirs.item2lexid)
  for i, asin in enumerate(ds.item_ids):
    assert list(ours.ids[i]) == official.id_words(theirs.item2lexid[asin]), asin
    assert ds.item_ids[ours.neighbours[i]].tolist() == theirs.cf_items[asin], asin


def test_training_examples_match_official(beauty):
  ours, theirs = beauty
  c, ds = ours.config, ours.ds
  examples = data.train_examples(ds, ours.tables, c.max_his, c.item_prompts)
  wide = data.train_examples(ds, ours.wide, c.max_his, c.item_prompts)
  dense = {a: i for i, a in enumerate(ds.user_ids)}
  chosen = np.flatnonzero(np.isin(examples.users, [dense[u] for u in theirs.seqs]))
  ex = examples.examples
  keys = [(ds.user_ids[examples.users[k]], int(ex.targets[k] - ds.indptr[examples.users[k]]))
          for k in chosen]
  want = official.train_samples(theirs.seqs, theirs.item2lexid, theirs.item2input)
  assert len(keys) == len(set(keys)) and set(keys) == set(want), (
      f"examples: {len(set(keys) - set(want))} extra, {len(set(want) - set(keys))} missing")
  errors = _compare(ours, examples, wide, chosen, [want[key] for key in keys])
  assert not errors, _report(errors, "training-example")


@pytest.mark.parametrize("which", ["valid", "test"])
def test_eval_examples_match_official(beauty, which):
  ours, theirs = beauty
  c, ds = ours.config, ours.ds
  assert c.valid_users == 0  # the paper preset validates on every user, as the official code
  examples = gram_run.eval_examples(c, ds, ours.tables, which)
  wide = gram_run.eval_examples(c, ds, ours.wide, which)
  users = [ds.user_ids[u] for u in examples.users]
  chosen = [k for k, u in enumerate(users) if u in theirs.seqs]
  want = official.eval_samples(theirs.seqs, theirs.item2lexid, theirs.item2input, which)
  assert sorted(users[k] for k in chosen) == sorted(want)
  errors = _compare(ours, examples, wide, np.asarray(chosen), [want[users[k]] for k in chosen])
  assert not errors, _report(errors, f"{which}-example")


def test_trie_holds_exactly_the_official_candidates(beauty):
  ours, theirs = beauty
  tok = ours.tokenizer
  # as gram_jax/run.py's run() builds it
  trie = build_trie([tok.word_ids(w) for w in ours.ids], tok.eos_id, tok.pad_id, tok.vocab_size)
  paths, stack = {}, [(0, ())]
  while stack:  # every root-to-EOS path of the CSR trie, with the item its EOS edge names
    state, prefix = stack.pop()
    for edge in trie.children(state):
      piece = official.EOS if trie.token[edge] == tok.eos_id else tok.token(trie.token[edge])
      if trie.item[edge] >= 0:
        assert piece == official.EOS and trie.item[edge] not in paths
        paths[int(trie.item[edge])] = prefix + (piece,)
      else:
        assert piece != official.EOS
        stack.append((int(trie.next_state[edge]), prefix + (piece,)))
  candidates = official.candidate_words(theirs.item2lexid)
  assert len(paths) == len(candidates) == len(set(candidates)) == ours.ds.num_items
  assert set(paths.values()) == set(candidates)
  for item, path in paths.items():
    assert list(path[:-1]) == official.id_words(theirs.item2lexid[ours.ds.item_ids[item]])
  # decoding steps: HF generate's max_length counts the decoder start token 0 (the runner's
  # `max(len(candidate))` over [0] + ID + EOS)
  assert trie.max_len + 1 == max(len(c) for c in candidates) + 1


def _item_prompt_mismatches(beauty) -> list[str]:
  """Item prompts of the 200 users' items that differ from the official ones."""
  ours, theirs = beauty
  reader = _Reader(ours.tokenizer)
  index = {a: i for i, a in enumerate(ours.ds.item_ids)}
  errors = []
  for asin in sorted({i for seq in theirs.seqs.values() for i in seq}):
    got = reader.text(ours.wide.item_prompts[index[asin]])
    want = official.model_view(theirs.item2input[asin])
    if got != want:
      errors.append(f"{asin}:\n  ours     {got!r}\n  official {want!r}")
  return errors


def test_item_prompts_equal_the_official_ones(beauty):
  errors = _item_prompt_mismatches(beauty)
  assert not errors, _report(errors, "item-prompt")
