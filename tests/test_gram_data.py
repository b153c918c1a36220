"""GRAM's tokenizer, prompts, training/evaluation examples and collaborative neighbours."""

import json
import os

import jax
import numpy as np
import pytest

from recsys_core.dataset import Dataset
from recsys_core.item_text import item_texts
from recsys_core.splits import leave_one_out_train_lengths
from recsys_core.synthetic import make_synthetic
from gram_jax import data, neighbours, prompts
from gram_jax.batching import PromptBatches
from gram_jax import tokenizer as tok_lib

# A hand-made catalogue of three items (dense ids 0, 1, 2).
IDS = [("▁nail", "▁red"), ("▁lip",), ("▁hair", "▁oil", "0")]
TEXTS = ["title: red nail polish; brand: opi", "title: matte lipstick; brand: mac",
         "title: argan hair oil; brand: moroccanoil"]
NEIGHBOURS = np.array([[1, 2], [2, 0], [0, 1]])


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "spiece.model")
  base = tok_lib.train_sentencepiece(prompts.tokenizer_corpus(TEXTS * 20), path, vocab_size=300)
  return base.with_words(w for words in IDS for w in words)


# --- tokenizer ----------------------------------------------------------------------------------

def test_trained_tokenizer_has_t5_layout_and_is_deterministic(tmp_path, tok):
  assert (tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2)
  assert tok.token(0) == "<pad>" and tok.token(1) == "</s>"
  a = tok_lib.train_sentencepiece(TEXTS * 5, str(tmp_path / "a.model"), vocab_size=120)
  b = tok_lib.train_sentencepiece(TEXTS * 5, str(tmp_path / "b.model"), vocab_size=120)
  assert open(tmp_path / "a.model", "rb").read() == open(tmp_path / "b.model", "rb").read()
  assert a.encode(TEXTS[0]) == b.encode(TEXTS[0])
  # kind "trained" reuses an existing model file instead of training again.
  c = tok_lib.get_tokenizer("trained", str(tmp_path / "a.model"), texts=["other text"])
  assert c.encode(TEXTS[0]) == a.encode(TEXTS[0])
  with pytest.raises(ValueError, match="tokenizer kind"):
    tok_lib.get_tokenizer("wordpiece", "x")


def test_id_words_are_single_tokens_appended_after_the_vocabulary(tok):
  for words in IDS:
    ids = tok.word_ids(words)
    assert len(ids) == len(words) and [tok.token(i) for i in ids] == list(words)
  # Words the trained vocabulary lacks are extra ids after it, sorted; text never yields them.
  assert all(tok.token_id(w) >= tok.base_size for w in tok.extra_words)
  assert list(tok.extra_words) == sorted(tok.extra_words)
  assert max(max(tok.encode(t)) for t in TEXTS) < tok.base_size
  assert tok.with_words(["▁nail"]) is tok
  with pytest.raises(ValueError, match="'▁zzz' is not a token"):
    tok.word_ids(["▁zzz"])


def test_hf_tokenizer_json_backend(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("▁red", -1.0),
           ("▁nail", -1.0), ("r", -3.0), ("e", -3.0), ("d", -3.0)]
  t = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab, unk_id=2))
  t.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
  t.add_special_tokens(["<pad>", "</s>", "<unk>"])
  path = str(tmp_path / "tokenizer.json")
  t.save(path)
  hf = tok_lib.get_tokenizer("hf_json", path)
  assert (hf.pad_id, hf.eos_id, hf.unk_id) == (0, 1, 2)
  assert hf.tokens("red nail") == ["▁red", "▁nail"]
  assert {0, 1, 2} <= hf.special_ids
  # Glued to a preceding token: no word start ("red" spelt r e d, not ▁red).
  assert [hf.token(i) for i in hf.encode("red nail", continuation=True)] == ["r", "e", "d", "▁nail"]
  assert hf.encode(" red", continuation=True) == hf.encode(" red")


def test_text_glued_to_an_id_has_no_word_start_as_in_the_official_string(tmp_path):
  # "|ren; similar" is one word of the official prompt string: T5 reads `;`, never `▁;`.
  texts = ["a; b; c, d; e"] * 50 + ["ren; similar items: x, y"] * 50
  tok = tok_lib.train_sentencepiece(texts, str(tmp_path / "t.model"), vocab_size=60)
  assert tok.tokens("; similar")[0] in ("▁;", "▁")
  glued = [tok.token(i) for i in tok.encode("; similar", continuation=True)]
  assert glued[0] == ";" and "".join(glued).replace("▁", " ") == "; similar"
  assert tok.with_words(["zz"]).encode("; x", True) == tok.encode("; x", True)


# --- prompts ------------------------------------------------------------------------------------

def test_prompts_match_the_official_templates():
  # History: items 0, 1, 2 in time order -> most recent first in the user prompt.
  user = prompts.user_prompt([IDS[2], IDS[1], IDS[0]])
  assert prompts.render(user) == ("What would user purchase after |▁hair|▁oil|0 ; |▁lip ; "
                                  "|▁nail|▁red ?")
  fine = prompts.item_prompt(IDS[0], [IDS[1], IDS[2]], TEXTS[0])
  assert prompts.render(fine) == ("item: |▁nail|▁red; similar items: |▁lip, |▁hair|▁oil|0; "
                                  "title: red nail polish; brand: opi")
  assert prompts.render(prompts.item_prompt(IDS[0], [], TEXTS[0])) == (
      "item: |▁nail|▁red; title: red nail polish; brand: opi")


def test_prompt_tokens_are_text_tokens_and_id_words_ending_in_eos(tok):
  enc = prompts.PromptEncoder(tok, 128)
  fine = enc(prompts.item_prompt(IDS[0], [IDS[1], IDS[2]], TEXTS[0]))
  expected = (tok.encode("item: ") + tok.word_ids(IDS[0]) + tok.encode("; similar items: ", True)
              + tok.word_ids(IDS[1]) + tok.encode(", ", True) + tok.word_ids(IDS[2])
              + tok.encode("; " + TEXTS[0], True) + [tok.eos_id])
  assert fine.tolist() == expected
  assert "|" not in [tok.token(i) for i in fine]
  assert fine.dtype == np.int32


def test_prompts_are_truncated_to_max_len_ending_in_eos(tok):
  enc = prompts.PromptEncoder(tok, 128)
  long = prompts.user_prompt([IDS[i % 3] for i in range(60)])
  full = enc.token_ids(long)
  assert len(full) > 128
  ids = enc(long)
  assert len(ids) == 128 and ids[-1] == tok.eos_id and ids[:127].tolist() == full[:127]
  short = enc(prompts.user_prompt([IDS[0]]))
  assert short.tolist() == enc.token_ids(prompts.user_prompt([IDS[0]])) + [tok.eos_id]


# --- examples -----------------------------------------------------------------------------------

def _hand_dataset() -> Dataset:
  """u0: 0 1 2 0 1 (t=3); u1: 2 0 1 (t=1); u2: 25 items cycling 0 1 2 (t=23)."""
  seqs = [[0, 1, 2, 0, 1], [2, 0, 1], [i % 3 for i in range(25)]]
  lengths = [len(s) for s in seqs]
  return Dataset(name="hand", user_ids=np.array(["u0", "u1", "u2"]),
                 item_ids=np.array(["B01", "B02", "B03"]),
                 indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                 items=np.concatenate(seqs).astype(np.int32))


@pytest.fixture(scope="module")
def tables(tok):
  return data.build_tables(IDS, TEXTS, tok, NEIGHBOURS, num_neighbours=2)


def test_every_training_prefix_is_an_example(tables):
  ds = _hand_dataset()
  train = data.train_examples(ds, tables)
  # t = len - 2 training items; prefixes of length 1..t-1: u0 2, u1 0, u2 22.
  assert len(train) == 2 + 0 + 22
  np.testing.assert_array_equal(train.users, [0, 0] + [2] * 22)
  hist = train.histories(np.arange(len(train)))
  np.testing.assert_array_equal(hist[0, :2], [0, -1])        # u0: [0] -> 1
  np.testing.assert_array_equal(hist[1, :3], [1, 0, -1])     # u0: [0, 1] -> 2, most recent first
  last = hist[-1]                                            # u2: 22 items -> the last 20
  np.testing.assert_array_equal(last, [(21 - j) % 3 for j in range(20)])
  batch = train.batch(np.array([1, 23]))
  np.testing.assert_array_equal(batch["target_item"], [2, 22 % 3])


def test_leave_one_out_eval_examples(tables):
  ds = _hand_dataset()
  valid = data.eval_examples(ds, tables, "valid")
  test = data.eval_examples(ds, tables, "test")
  np.testing.assert_array_equal(valid.users, [0, 1, 2])
  vb, tb = valid.batch(np.arange(3)), test.batch(np.arange(3))
  np.testing.assert_array_equal(vb["target_item"], [0, 0, 23 % 3])
  np.testing.assert_array_equal(tb["target_item"], [1, 1, 24 % 3])
  np.testing.assert_array_equal(test.histories(np.arange(3))[:, :4],
                                [[0, 2, 1, 0], [0, 2, -1, -1], [23 % 3, 22 % 3, 21 % 3, 20 % 3]])
  with pytest.raises(ValueError, match="which="):
    data.eval_examples(ds, tables, "train")


def test_batch_layout(tok, tables):
  ds = _hand_dataset()
  test = data.eval_examples(ds, tables, "test")
  b = test.batch(np.array([0, 1]))
  assert b["input_ids"].shape == (2, 21, 128) and b["input_ids"].dtype == np.int32
  assert b["prompt_mask"].shape == (2, 21) and b["prompt_mask"].dtype == bool
  np.testing.assert_array_equal(b["prompt_mask"][1, :4], [True, True, True, False])
  enc = prompts.PromptEncoder(tok, 128)
  # u1 test: history [2, 0] -> prompts: user, fine(0), fine(2); the rest all padding.
  user = enc(prompts.user_prompt([IDS[0], IDS[2]]))
  assert b["input_ids"][1, 0, :len(user)].tolist() == user.tolist()
  assert (b["input_ids"][1, 0, len(user):] == 0).all()
  for row, item in ((1, 0), (2, 2)):
    fine = enc(prompts.item_prompt(IDS[item], [IDS[j] for j in NEIGHBOURS[item]], TEXTS[item]))
    assert b["input_ids"][1, row, :len(fine)].tolist() == fine.tolist()
  assert (b["input_ids"][1, 3:] == 0).all()
  # Labels: target ID tokens + EOS, padded with 0 to the longest ID + 1.
  assert b["labels"].shape == (2, 4)
  assert b["labels"][1].tolist() == tok.word_ids(IDS[1]) + [tok.eos_id, 0, 0]
  # Without item prompts only the user prompt is left.
  no_items = data.eval_examples(ds, tables, "test", item_prompts=False).batch(np.array([1]))
  assert no_items["input_ids"].shape == (1, 1, 128)
  assert no_items["input_ids"][0, 0].tolist() == b["input_ids"][1, 0].tolist()


def test_synthetic_counts_and_epochs(tok):
  ds = make_synthetic()
  ids = [(f"▁w{i % 7}", str(i)) for i in range(ds.num_items)]
  texts = item_texts(ds, lowercase=True)
  t = tok.with_words(w for words in ids for w in words)
  tables = data.build_tables(ids, texts, t, None, 0, prompt_len=64)
  train = data.train_examples(ds, tables)
  lengths = leave_one_out_train_lengths(ds)
  assert len(train) == np.maximum(lengths - 1, 0).sum()
  assert len(data.eval_examples(ds, tables, "valid")) == (np.diff(ds.indptr) >= 3).sum()
  plan = PromptBatches(train, batch_size=4096, seed=0, num_fine=20).plan(0)
  assert train.batch(plan[0][1])["input_ids"].shape == (len(plan[0][1]), 21, 64)
  seen = [train.batch(index)["target_item"] for _, index in plan]
  # One epoch visits every example once: the multiset of targets is the training targets'.
  all_targets = ds.items[train.examples.targets]
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(all_targets))


# --- collaborative neighbours -------------------------------------------------------------------

def test_cosine_top_k_matches_numpy():
  table = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
  got = neighbours.cosine_top_k(table, 5, block_size=128)
  unit = table / np.linalg.norm(table, axis=1, keepdims=True)
  sims = unit.astype(np.float64) @ unit.T.astype(np.float64)
  np.fill_diagonal(sims, -np.inf)
  np.testing.assert_array_equal(got, np.argsort(-sims, axis=1)[:, :5])
  with pytest.raises(ValueError, match="1 <= k < num_items"):
    neighbours.cosine_top_k(table[:3], 3)


def test_neighbours_from_a_sasrec_checkpoint(tmp_path):
  from configs import sasrec as sasrec_config  # pylint: disable=g-import-not-at-top
  from recsys_core import records, train  # pylint: disable=g-import-not-at-top
  from recsys_core.checkpoint import Checkpoints  # pylint: disable=g-import-not-at-top
  from seqrec import run as seqrec_run, sasrec  # pylint: disable=g-import-not-at-top
  config = sasrec_config.get_config("synthetic")
  num_items = 40
  model = seqrec_run.build_model(config, num_items)
  abstract = jax.eval_shape(lambda: train.create_state(
      sasrec.init_params(model, 7), seqrec_run.build_optimizer(config), 7))
  rng = np.random.default_rng(0)  # random values of the right shapes: no model compilation
  state = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype)
                       if np.issubdtype(s.dtype, np.floating) else np.zeros(s.shape, s.dtype),
                       abstract)
  checkpoints = Checkpoints(str(tmp_path))
  checkpoints.save("best", state, {"best_step": 0})
  checkpoints.close()
  records.write_json(str(tmp_path / "config.json"), config.to_dict())
  table = neighbours.sasrec_item_table(str(tmp_path), num_items)
  expected = np.asarray(state.params["item_embedding"]["embedding"])[1:]
  np.testing.assert_array_equal(table, expected)
  ds = Dataset(name="x", user_ids=np.array(["u"]), item_ids=np.arange(num_items).astype(str),
               indptr=np.array([0, 0]), items=np.zeros(0, np.int32))
  got = neighbours.load_neighbours(f"sasrec:{tmp_path}", ds, "", 3)
  np.testing.assert_array_equal(got, neighbours.cosine_top_k(expected, 3))
  with pytest.raises(FileNotFoundError, match="not a trained SASRec run"):
    neighbours.sasrec_item_table(str(tmp_path / "missing"), num_items)
  with pytest.raises(ValueError, match="neighbour source"):
    neighbours.load_neighbours("knn", ds, "", 3)
