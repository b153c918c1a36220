"""GRAM's multi-granular prompts, exactly as the official code builds them, and their tokenisation.

Official templates (src/data/multi_task_dataset_gram.py, src/utils/indexing.py, defaults of
src/arguments.py and command/train_gram_*.sh):
  coarse user prompt: `What would user purchase after {id_1} ; {id_2} ; ... ?`, the history's
    lexical IDs most recent first (`reverse_history=1`, `his_sep=" ; "`), at most 20 (`max_his`);
  fine item prompt, one per history item, most recent first:
    `item: {id}; similar items: {nb_1}, {nb_2}, ...; {item text}` (`id_linking=1`), with the
    item's top-k collaborative neighbours (Beauty k=10, Toys 5, Sports 10), its lower-cased text
    (`title: ...; brand: ...; categories: ...; ...`);
  an ID inside a prompt is written `|tok|tok|...`; after tokenisation the "|" tokens are removed,
    so the prompt carries exactly the ID's level tokens (`item_id_type="split"`);
  each prompt is cut to 128 tokens ending in EOS: the first 127 tokens + EOS when longer.
The collator's filter drops every "|" token, also those of the item text (`skin & hair | facial
toner` -> `skin & hair facial toner`): text segments lose each "|" with the space before it.
Here a prompt is a list of segments, text (str) or a lexical ID (tuple of words); text segments
are tokenised, ID words are looked up (one token each), so no "|" ever reaches the tokens.
`render` gives the official string form. With k = 0 neighbours (the "w/o collaborative" ablation)
the `; similar items: ...` part is left out, with no text the `; {text}` part.
"""

from __future__ import annotations

import re
from typing import Sequence, Union

import numpy as np

from gram_jax.id_files import format_id
from gram_jax.tokenizer import Tokenizer
from recsys_core.errors import ConfigError

Segment = Union[str, tuple]  # text, or a lexical ID (tuple of words)

USER_PREFIX = "What would user purchase after "
HISTORY_SEP = " ; "
USER_SUFFIX = " ?"
ITEM_PREFIX = "item: "
NEIGHBOURS_PREFIX = "; similar items: "
NEIGHBOUR_SEP = ", "
TEXT_PREFIX = "; "
BAR = re.compile(r" ?\|")  # the official collator's dropped tokens "|" and "▁|"


def user_prompt(history: Sequence[Sequence[str]]) -> list[Segment]:
  """The coarse prompt of a history given as lexical IDs, MOST RECENT FIRST."""
  out: list[Segment] = [USER_PREFIX]
  for j, words in enumerate(history):
    if j:
      out.append(HISTORY_SEP)
    out.append(tuple(words))
  out.append(USER_SUFFIX)
  return out


def item_prompt(item_id: Sequence[str], neighbour_ids: Sequence[Sequence[str]], text: str
                ) -> list[Segment]:
  """The fine prompt of one item: its ID, its neighbours' IDs, its (lower-cased) text."""
  out: list[Segment] = [ITEM_PREFIX, tuple(item_id)]
  if neighbour_ids:
    out.append(NEIGHBOURS_PREFIX)
    for j, words in enumerate(neighbour_ids):
      if j:
        out.append(NEIGHBOUR_SEP)
      out.append(tuple(words))
  if text:
    out.append(TEXT_PREFIX + text)
  return out


def render(segments: Sequence[Segment]) -> str:
  """The official string form (IDs as `|tok|tok`)."""
  return "".join(s if isinstance(s, str) else format_id(s) for s in segments)


def tokenizer_corpus(texts: Sequence[str]) -> list[str]:
  """Training text for a SentencePiece tokenizer: the item texts and the templates' words, the
  latter repeated (one line per 10 items) so they become whole pieces rather than letters."""
  templates = [render(user_prompt([("x",), ("y",)])), render(item_prompt(("x",), [("y",)], "z"))]
  return list(texts) + templates * max(1, len(texts) // 10)


class PromptEncoder:
  """Segments -> token ids [<= max_len] ending in EOS (official truncation: the first max_len - 1
  tokens + EOS). Text segments are tokenised once and cached."""

  def __init__(self, tokenizer: Tokenizer, max_len: int = 128):
    if max_len < 2:
      raise ConfigError(f"prompt max_len={max_len}: need room for a token and EOS")
    self.tokenizer = tokenizer
    self.max_len = max_len
    self._text: dict[tuple[str, bool], list[int]] = {}

  def _encode_text(self, text: str, continuation: bool) -> list[int]:
    key = (text, continuation)
    if key not in self._text:
      self._text[key] = self.tokenizer.encode(BAR.sub("", text), continuation=continuation)
    return self._text[key]

  def token_ids(self, segments: Sequence[Segment]) -> list[int]:
    """Untruncated ids without EOS; text after an ID continues it (no leading word-start)."""
    ids: list[int] = []
    after_id = False
    for s in segments:
      if isinstance(s, str):
        ids += self._encode_text(s, after_id)
        after_id = False
      else:
        ids += self.tokenizer.word_ids(s)
        after_id = True
    return ids

  def __call__(self, segments: Sequence[Segment]) -> np.ndarray:
    """[<= max_len] int32 ids ending in EOS."""
    ids = self.token_ids(segments)[:self.max_len - 1] + [self.tokenizer.eos_id]
    return np.asarray(ids, np.int32)
