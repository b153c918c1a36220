"""GRAM's tokenizer: text -> token ids with T5's special-id layout, and lexical-ID words -> ids.

The paper uses T5's SentencePiece vocabulary; a pretrained one can be passed to `get_tokenizer`
(kind "sentencepiece" or "hf_json", below). When none is given, the pipeline TRAINS a SentencePiece
BPE model on the dataset's own item text (plus the prompt templates), with T5's layout pad=0, eos=1, unk=2 and T5's "▁" word-start marker. Why this and not
the MiniLM WordPiece vocabulary: the model is trained from scratch, so a pretrained vocabulary
brings no meaning, only size; a dataset-fitted vocabulary of ~8k pieces segments the item text
into fewer tokens (more of each 128-token prompt survives truncation) and keeps the embedding
table and output softmax 4x smaller than WordPiece's 30,522 (the CPU preset's cost); and its
pieces look like T5's, so our lexical IDs have the authors' format (`|▁loss|▁brake|ren`).
Why BPE and not T5's unigram algorithm: BPE merges the most frequent pairs first, so words found
in (nearly) every item text (field names such as "categories", template words) become single
pieces, while SentencePiece's unigram trainer on a corpus this small can leave them split
(`▁categor ies`), spending prompt tokens on text that carries no item information.

Lexical-ID words must be single tokens. Our own IDs are named with this tokenizer's pieces, so they
already are (except multi-digit collision suffixes perhaps). Words of a foreign ID file (the
authors' T5 pieces such as `ren`) that the vocabulary lacks are APPENDED as extra ids after it
(`with_words`). We do not use SentencePiece's user_defined_symbols for them: those are cut out of
any text they occur in (`ren` inside "children", "parent"), distorting the tokenisation of the item
text; our prompts insert ID words by lookup (`word_ids`), never by re-tokenising text, so the
extra ids need not be reachable from text at all.

With an HF T5 checkpoint (see gram_jax/hf_convert.py) a user switches to T5's own vocabulary by
config: kind "sentencepiece" with the checkpoint's `spiece.model`, or "hf_json" with its
`tokenizer.json`. The authors' released IDs are T5 pieces, so with T5's vocabulary they need no
extra ids at all.
"""

from __future__ import annotations

import io
import json
import os
from typing import Callable, Iterable, Sequence

from recsys_core import records
from recsys_core.errors import ConfigError, DataError

WORD_START = "\u2581"  # "▁": SentencePiece's (and T5's) word-start marker
KINDS = ("trained", "sentencepiece", "hf_json")


class Tokenizer:
  """A base vocabulary (SentencePiece or HF tokenizers) plus appended lexical-ID words.

  Ids 0..base_size-1 are the base vocabulary's; base_size.. are `extra_words` in order.
  """

  def __init__(self, pieces: Sequence[str], encode_fn: Callable[[str], list[int]],
               special_ids: Iterable[int], pad_id: int, eos_id: int, unk_id: int,
               extra_words: Sequence[str] = (), source: str = "",
               encode_glued_fn: Callable[[str], list[int]] | None = None):
    self._pieces = list(pieces)
    self._encode_fn = encode_fn
    self._encode_glued_fn = encode_glued_fn
    self.special_ids = frozenset(int(i) for i in special_ids)
    self.pad_id, self.eos_id, self.unk_id = int(pad_id), int(eos_id), int(unk_id)
    self.base_size = len(self._pieces)
    self.extra_words = tuple(extra_words)
    self.source = source
    self._index = {p: i for i, p in enumerate(self._pieces)}
    for j, word in enumerate(self.extra_words):
      if word in self._index:
        raise ValueError(f"extra word {word!r} is already token {self._index[word]}")
      self._index[word] = self.base_size + j
    self._pieces += self.extra_words
    self._start = self._index.get(WORD_START)

  @property
  def vocab_size(self) -> int:
    return len(self._pieces)

  def encode(self, text: str, continuation: bool = False) -> list[int]:
    """Token ids of `text` (no EOS). continuation: the text continues a preceding token (it is
    glued to an ID word, e.g. "; similar items: "), so it gets no leading word start: it is
    tokenised as inside the official prompt string (`|ren; similar` -> `ren` `;`, not `▁;`), by
    the vocabulary's encoder without its dummy "▁" prefix where the tokenizer has one, else by
    dropping a leading bare "▁" token."""
    if continuation and not text[:1].isspace():
      if self._encode_glued_fn is not None:
        return self._encode_glued_fn(text)
      ids = self._encode_fn(text)
      return ids[1:] if ids and ids[0] == self._start else ids
    return self._encode_fn(text)

  def tokens(self, text: str) -> list[str]:
    """The token strings of `text` (what the lexical IDs are named with)."""
    return [self._pieces[i] for i in self.encode(text)]

  def token(self, token_id: int) -> str:
    return self._pieces[token_id]

  def token_id(self, word: str) -> int:
    """Id of a token string, or -1 if the vocabulary lacks it."""
    return self._index.get(word, -1)

  def word_ids(self, words: Sequence[str]) -> list[int]:
    """Ids of lexical-ID words, one token each; raises ValueError naming a word it lacks."""
    out = []
    for w in words:
      i = self._index.get(w, -1)
      if i < 0:
        raise ValueError(f"ID word {w!r} is not a token of the tokenizer ({self.source}); build it "
                         "with tokenizer.with_words(all ID words)")
      out.append(i)
    return out

  def with_words(self, words: Iterable[str]) -> "Tokenizer":
    """This tokenizer plus the words of `words` it lacks as extra ids (sorted, so the result
    depends only on the set of words)."""
    missing = sorted({w for w in words if w not in self._index})
    if not missing:
      return self
    return Tokenizer(self._pieces[:self.base_size], self._encode_fn, self.special_ids,
                     self.pad_id, self.eos_id, self.unk_id, self.extra_words + tuple(missing),
                     self.source, self._encode_glued_fn)


def _require(value: int, what: str, source: str) -> int:
  if value is None or value < 0:
    raise ConfigError(f"{source}: the tokenizer has no {what} token (GRAM needs T5's pad and eos)")
  return value


def from_sentencepiece_proto(proto: bytes, source: str = "sentencepiece") -> Tokenizer:
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor(model_proto=proto)
  # The same model without the dummy "▁" prefix: text glued to a preceding token.
  model = sentencepiece_model_pb2.ModelProto()
  model.ParseFromString(proto)
  model.normalizer_spec.add_dummy_prefix = False
  glued = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
  size = sp.get_piece_size()
  special = [i for i in range(size) if sp.is_control(i) or sp.is_unknown(i)]
  return Tokenizer([sp.id_to_piece(i) for i in range(size)],
                   lambda text: sp.encode(text, out_type=int), special,
                   _require(sp.pad_id(), "pad", source), _require(sp.eos_id(), "eos", source),
                   _require(sp.unk_id(), "unk", source), source=source,
                   encode_glued_fn=lambda text: glued.encode(text, out_type=int))


def load_sentencepiece(path: str) -> Tokenizer:
  """A SentencePiece model file: ours, or T5's `spiece.model`."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such SentencePiece model (config tokenizer.path)")
  with open(path, "rb") as f:
    return from_sentencepiece_proto(f.read(), source=path)


def load_hf_json(path: str) -> Tokenizer:
  """An HF `tokenizer.json` (T5's: pad <pad>=0, eos </s>=1, unk <unk>=2)."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such tokenizer.json (config tokenizer.path)")
  tok = tokenizers.Tokenizer.from_file(path)
  size = tok.get_vocab_size(with_added_tokens=True)
  pieces = [tok.id_to_token(i) or "" for i in range(size)]
  special = [i for i, t in tok.get_added_tokens_decoder().items() if t.special]
  ids = {name: tok.token_to_id(name) for name in ("<pad>", "</s>", "<unk>")}
  glued = _without_prefix_space(tok)
  return Tokenizer(pieces, lambda text: tok.encode(text, add_special_tokens=False).ids, special,
                   _require(ids["<pad>"], "pad <pad>", path),
                   _require(ids["</s>"], "eos </s>", path),
                   _require(ids["<unk>"], "unk <unk>", path), source=path,
                   encode_glued_fn=glued and (
                       lambda text: glued.encode(text, add_special_tokens=False).ids))


def _without_prefix_space(tok):
  """A copy of an HF tokenizer whose Metaspace pre-tokenizers add no "▁" before the text (T5's
  tokenizer.json: prepend_scheme "always"), or None when it has none."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  spec = json.loads(tok.to_str())
  found = []

  def visit(node):
    if isinstance(node, dict):
      if node.get("type") == "Metaspace":
        node["prepend_scheme"], node["add_prefix_space"] = "never", False
        found.append(node)
      for value in node.values():
        visit(value)
    elif isinstance(node, list):
      for value in node:
        visit(value)

  visit(spec.get("pre_tokenizer"))
  return tokenizers.Tokenizer.from_str(json.dumps(spec)) if found else None


def train_sentencepiece(texts: Sequence[str], path: str, vocab_size: int = 8000,
                        model_type: str = "bpe") -> Tokenizer:
  """Train a SentencePiece model on `texts` (T5 layout: pad 0, eos 1, unk 2, no bos) and write it
  to `path` atomically. One thread: the model is a pure function of the texts and settings.
  vocab_size is an upper bound (a small corpus yields fewer pieces)."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size,
      model_type=model_type, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
      hard_vocab_limit=False, num_threads=1, minloglevel=2)
  proto = buf.getvalue()
  records.write_atomic(path, lambda f: f.write(proto))
  return from_sentencepiece_proto(proto, source=path)


def get_tokenizer(kind: str, path: str, texts: Sequence[str] = (), vocab_size: int = 8000
                  ) -> Tokenizer:
  """The tokenizer a config asks for.

  kind: "trained": our SentencePiece model at `path`, trained on `texts` first if the file does not
    exist yet (a resumed run reuses it); "sentencepiece": an existing model file (T5's
    spiece.model); "hf_json": an HF tokenizer.json.
  """
  if kind == "trained":
    if os.path.isfile(path):
      return load_sentencepiece(path)
    if not texts:
      raise ConfigError(f"{path}: no trained tokenizer yet and no texts to train one on")
    return train_sentencepiece(texts, path, vocab_size)
  if kind == "sentencepiece":
    return load_sentencepiece(path)
  if kind == "hf_json":
    return load_hf_json(path)
  raise ConfigError(f"tokenizer kind {kind!r}: use one of {', '.join(KINDS)}")
