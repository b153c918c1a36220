"""GRAM's training and evaluation examples on the host (numpy), assembled per batch.

Examples (official `load_train` / `load_validation` / `load_test`, leave-one-out):
  train: every prefix of a user's training sequence seq[:t] (t = len - 2, see
    `recsys_core.splits.leave_one_out_train_lengths`): history seq[:j] -> target seq[j], j = 1..t-1
    (the empty history j = 0 is skipped, `skip_empty_his=1`);
  valid: seq[:t] -> seq[t]; test: seq[:t+1] -> seq[t+1] (users with >= 3 interactions);
  the history is cut to its last `max_his` (20) items and put MOST RECENT FIRST.
They are `seqrec.data.Examples` (target positions + history lengths), the same structure SASRec
trains on; nothing of size examples x prompts x tokens is ever stored: each item's fine prompt is
tokenised ONCE into `GramTables.item_prompts` [num_items, L], and a batch gathers its rows; only the
coarse user prompt is tokenised per example (a list concatenation of cached ID tokens).

A batch (`GramExamples.batch`), with N = 1 + max_his prompts (N = 1 without item prompts):
  input_ids:   [b, N, L] int32, prompt 0 = the user prompt, prompts 1.. = the history items' fine
               prompts most recent first; each ends in EOS, padded with pad_id (0), absent prompts
               all pad;
  prompt_mask: [b, N] bool, True for the prompts that exist;
  labels:      [b, T] int32 target ID tokens + EOS, padded with pad_id (0): the loss ignores
               positions where labels == pad_id; T = longest ID + 1;
  target_item: [b] int32 dense id of the target item;
`gram_jax.batching.PromptBatches` adds "weights" [b] float32 (0 for the rows padding the last
batch).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from recsys_core.dataset import Dataset
from recsys_core.splits import leave_one_out_train_lengths
from gram_jax import prompts
from gram_jax.tokenizer import Tokenizer
from seqrec.data import Examples, train_examples as seqrec_train_examples


@dataclasses.dataclass(frozen=True)
class GramTables:
  """Per-item token tables, built once per run.

  Attributes:
    item_prompts: [num_items, L] int32 every item's fine prompt (EOS-ended, pad-padded).
    labels: [num_items, T] int32 every item's ID tokens + EOS (pad-padded); T = longest ID + 1.
    ids: [num_items] lexical IDs (tuples of words), for the user prompts.
    encoder: tokenises the user prompts (same tokenizer and L).
  """
  item_prompts: np.ndarray
  labels: np.ndarray
  ids: tuple
  encoder: prompts.PromptEncoder

  @property
  def pad_id(self) -> int:
    return self.encoder.tokenizer.pad_id

  @property
  def prompt_len(self) -> int:
    return self.item_prompts.shape[1]


def _pad_rows(rows: Sequence[np.ndarray], width: int, pad: int) -> np.ndarray:
  out = np.full((len(rows), width), pad, np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def build_tables(ids: Sequence[Sequence[str]], texts: Sequence[str], tokenizer: Tokenizer,
                 neighbours: Optional[np.ndarray] = None, num_neighbours: int = 0,
                 prompt_len: int = 128) -> GramTables:
  """Tokenise every item's fine prompt and target once.

  Args:
    ids: [num_items] lexical IDs (the tokenizer must hold their words: `tokenizer.with_words`).
    texts: [num_items] lower-cased item text (`recsys_core.item_text.item_texts(..., lowercase=True)`).
    neighbours: [num_items, K] int dense neighbour ids, most similar first (K >= num_neighbours).
    num_neighbours: k of the fine prompt (official: Beauty 10, Toys 5, Sports 10; 0: none).
    prompt_len: L, tokens per prompt (official 128).
  """
  if len(texts) != len(ids):
    raise ValueError(f"{len(texts)} item texts for {len(ids)} item IDs")
  if num_neighbours:
    if neighbours is None or neighbours.shape[1] < num_neighbours:
      have = 0 if neighbours is None else neighbours.shape[1]
      raise ValueError(f"num_neighbours={num_neighbours} but {have} neighbours per item given")
  encoder = prompts.PromptEncoder(tokenizer, prompt_len)
  fine = [encoder(prompts.item_prompt(
      ids[i], [ids[j] for j in neighbours[i, :num_neighbours]] if num_neighbours else [],
      texts[i])) for i in range(len(ids))]
  targets = [np.asarray(tokenizer.word_ids(w) + [tokenizer.eos_id], np.int32) for w in ids]
  pad = tokenizer.pad_id
  return GramTables(item_prompts=_pad_rows(fine, prompt_len, pad),
                    labels=_pad_rows(targets, max(map(len, targets)), pad),
                    ids=tuple(tuple(w) for w in ids), encoder=encoder)


@dataclasses.dataclass(frozen=True)
class GramExamples:
  """Examples of one kind (train / valid / test) and the tables their batches gather from.

  Attributes:
    examples: example k predicts items[targets[k]] from the lengths[k] (<= max_his) items before.
    users: [num_examples] int64 dense user of each example.
    tables: the per-item token tables.
    item_prompts: False drops the fine prompts (N = 1; the "w/o item prompts" ablation).
  """
  examples: Examples
  users: np.ndarray
  tables: GramTables
  item_prompts: bool = True

  def __len__(self) -> int:
    return len(self.examples)

  @property
  def max_his(self) -> int:
    return self.examples.max_len

  @property
  def num_prompts(self) -> int:
    return 1 + (self.max_his if self.item_prompts else 0)

  def histories(self, index: np.ndarray) -> np.ndarray:
    """[b, max_his] int64 history items of examples `index`, most recent first, -1 = none."""
    ex = self.examples
    back = np.arange(self.max_his)
    real = back[None, :] < ex.lengths[index, None]
    pos = ex.targets[index, None] - 1 - back[None, :]
    return np.where(real, ex.items[np.where(real, pos, 0)], -1).astype(np.int64)

  def user_prompts(self, index: np.ndarray, history: Optional[np.ndarray] = None) -> np.ndarray:
    """[b, L] int32 coarse user prompts of examples `index` (`history`: their `histories`)."""
    t = self.tables
    history = self.histories(np.asarray(index)) if history is None else history
    out = np.full((len(history), t.prompt_len), t.pad_id, np.int32)
    for row, hist in enumerate(history):
      user = t.encoder(prompts.user_prompt([t.ids[h] for h in hist[hist >= 0]]))
      out[row, :len(user)] = user
    return out

  def batch(self, index: np.ndarray) -> dict:
    """The model inputs of examples `index` (see the module docstring)."""
    t = self.tables
    index = np.asarray(index)
    history = self.histories(index)
    real = history >= 0
    input_ids = np.full((len(index), self.num_prompts, t.prompt_len), t.pad_id, np.int32)
    input_ids[:, 0] = self.user_prompts(index, history)
    if self.item_prompts:
      input_ids[:, 1:] = np.where(real[..., None], t.item_prompts[np.maximum(history, 0)],
                                  t.pad_id)
      prompt_mask = np.concatenate([np.ones((len(index), 1), bool), real], axis=1)
    else:
      prompt_mask = np.ones((len(index), 1), bool)
    target = self.examples.items[self.examples.targets[index]].astype(np.int32)
    return {"input_ids": input_ids, "prompt_mask": prompt_mask, "labels": t.labels[target],
            "target_item": target}


def train_examples(ds: Dataset, tables: GramTables, max_his: int = 20,
                   item_prompts: bool = True) -> GramExamples:
  """Every prefix of every user's leave-one-out training sequence (module docstring)."""
  ex = seqrec_train_examples(ds, max_his)
  users = ds.user_of_interaction()[ex.targets].astype(np.int64)
  return GramExamples(ex, users, tables, item_prompts)


def eval_examples(ds: Dataset, tables: GramTables, which: str, max_his: int = 20,
                  item_prompts: bool = True) -> GramExamples:
  """One example per user with >= 3 interactions: which="valid" predicts seq[t] from seq[:t],
  "test" seq[t+1] from seq[:t+1] (t = len - 2)."""
  if which not in ("valid", "test"):
    raise ValueError(f"which={which!r}: use 'valid' or 'test'")
  n = np.diff(ds.indptr)
  users = np.flatnonzero(n >= 3).astype(np.int64)
  stop = leave_one_out_train_lengths(ds)[users] + (which == "test")
  ex = Examples(items=ds.items, targets=ds.indptr[users] + stop,
                lengths=np.minimum(stop, max_his).astype(np.int64), max_len=max_his)
  return GramExamples(ex, users, tables, item_prompts)
