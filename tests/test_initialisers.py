"""seqrec/initialisers.py: every initialiser through the same SASRec and train step, frozen parts,
the whitening / PCA transforms against numpy float64, the ID path unchanged, and bad input."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ace as ace_configs
from configs import sasrec as sasrec_configs
from recsys_core import readers
from seqrec import initialisers
from seqrec import run
from seqrec import sasrec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FROZEN = {"whitenrec": ("frozen_full",), "whitenrec_plus": ("frozen_full", "frozen_group"),
          "llmemb": ("frozen_base",), "alphafuse": ("frozen_semantic",),
          "alpharec": ("frozen_raw",)}


@functools.lru_cache(maxsize=None)
def synthetic():
  return readers.load_dataset("synthetic", "")


def tiny_config(preset_kind, **init):
  """configs/ace.py's synthetic preset with a tiny model (hidden 16, one layer, length 10) and
  48-dim bag-of-words embeddings."""
  config = ace_configs.get_config("synthetic_id" if preset_kind == "id"
                                  else f"synthetic_{preset_kind}_bow")
  config.model.update(hidden=16, inner=32, num_layers=1)
  config.max_len = 10
  config.init.bow_dims = 48
  config.init.update(init)
  return config


# Runs in a fresh process at XLA optimisation level 0 (compiling the five train steps then takes a
# third of the time; speed does not matter here). For every kind: build the table through
# configs/ace.py's synthetic preset, take 3 steps of recsys_core.train's step on one synthetic batch
# (dropout off, so its falling loss is not noise), report the initial table and which parameters
# moved. id/raw/llm2x/ace share one model, so one step.
_TRAIN_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from recsys_core import train
    from seqrec import data as data_lib, initialisers, run, sasrec
    from tests.test_initialisers import synthetic, tiny_config
    ds = synthetic()
    batches = data_lib.Batches(data_lib.train_examples(ds, 10), 64, 0, pack_multiple=8)
    mesh = train.make_mesh(jax.devices()[:1])
    steps, out = {}, {}
    for kind in initialisers.KINDS:
      config = tiny_config(kind)
      config.model.update(dropout=0.0, attention_dropout=0.0)
      config.init.mlp_dropout = 0.0
      init = initialisers.build(config, ds)
      model = run.build_model(config, ds.num_items, init and init.module)
      params = initialisers.init_params(model, config.seed, init)
      table = initialisers.initial_table(model, params)
      frozen = bool(init and init.frozen)
      optimizer = run.build_optimizer(config, frozen)
      if (model, frozen) not in steps:
        steps[model, frozen] = train.make_train_step(
            lambda p, b, r, m=model: sasrec.ce_loss(m, p, b, r), optimizer, mesh)
      state = train.replicate(train.create_state(params, optimizer, 0), mesh)
      before, losses = jax.device_get(state.params), []
      batch = next(batches.epoch(0))
      for _ in range(3):  # the same batch, no dropout: its loss must fall
        state, metrics = steps[model, frozen](state, train.global_batch(batch, mesh))
        losses.append(float(metrics["loss"]))
      after = jax.tree.leaves(jax.device_get(state.params))
      leaves = {"/".join(train.path_names(p)): (np.asarray(v), np.asarray(w))
                for (p, v), w in zip(jax.tree_util.tree_leaves_with_path(before), after)}
      out[kind] = {
          "shape": table.shape, "dtype": str(table.dtype), "finite": bool(np.isfinite(table).all()),
          "std": float(table.std()), "losses": losses,
          "module": init is not None and init.module is not None,
          "still": sorted(k for k, (v, w) in leaves.items() if not np.any(v != w)),
          "frozen": sorted(k for k in leaves if initialisers.is_frozen(tuple(k.split("/")))),
          "filled": sorted(k for k, (v, w) in leaves.items()
                           if v.ndim == 2 and np.abs(v[1:]).max() > 0 and not np.any(v[0]))}
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def trained():
  # ROOT goes in front of the caller's PYTHONPATH, not instead of it (the GPU machine's packages
  # came through PYTHONPATH: replacing it turned all 8 tests below into errors there)
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
  env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0", PYTHONPATH=path)
  result = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("kind", initialisers.KINDS)
def test_every_initialiser_gives_a_table_and_trains(trained, kind):
  out = trained[kind]
  assert out["shape"] == [1000, 16] and out["dtype"] == "float32" and out["finite"]
  assert out["module"] == (kind in FROZEN)
  if kind in ("raw", "llm2x", "ace"):
    assert abs(out["std"] - 0.1) < 1e-5
  assert np.all(np.isfinite(out["losses"])) and out["losses"][-1] < out["losses"][0]
  frozen = ["item_table/" + name for name in FROZEN.get(kind, ())]
  assert out["frozen"] == frozen
  assert out["still"] == frozen             # frozen parts get exactly zero updates; all else trains
  assert set(frozen) <= set(out["filled"])  # filled from the embeddings; padding row 0 is zero


def test_id_kind_is_the_unchanged_sasrec():
  config = sasrec_configs.get_config("synthetic")
  assert config.init.kind == "id" and initialisers.build(config, synthetic()) is None
  model = run.build_model(config, 1000)
  params = initialisers.init_params(model, config.seed, None)
  reference = sasrec.init_params(sasrec.SASRec(
      num_items=1000, max_len=20, hidden=32, inner=64, num_layers=1, num_heads=2, dropout=0.2,
      attention_dropout=0.2), config.seed)
  assert jax.tree.structure(params) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)
  assert model.item_table is None
  assert type(run.build_optimizer(config).init(params)) is type(  # no masking added
      __import__("optax").adam(1e-3).init(params))


def test_zca_full_and_group_whitening_against_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) + 3.0
  full = initialisers.zca_whiten(x.astype(np.float32), 1)
  centred = x - x.mean(0)
  s, u = np.linalg.eigh(centred.T @ centred / len(x))
  np.testing.assert_allclose(full, centred @ u @ np.diag(s ** -0.5) @ u.T, atol=2e-4)
  np.testing.assert_allclose(np.cov(full.T, bias=True), np.eye(12), atol=2e-4)
  group = initialisers.zca_whiten(x.astype(np.float32), 3)
  cov = np.cov(group.T, bias=True)
  for g in range(3):
    block = slice(4 * g, 4 * g + 4)
    np.testing.assert_allclose(cov[block, block], np.eye(4), atol=2e-4)
  assert np.abs(cov[:4, 4:]).max() > 0.1  # groups are not decorrelated from each other


def test_pca_and_raw_truncation_against_numpy_svd():
  rng = np.random.default_rng(1)
  x = (rng.normal(size=(400, 10)) * np.arange(1, 11)[::-1] + 2.0).astype(np.float32)
  def same_up_to_signs(ours, reference):
    signs = np.sign(np.sum(ours * reference, axis=0))
    np.testing.assert_allclose(ours * signs, reference, rtol=1e-4, atol=1e-3)
  u, s, _ = np.linalg.svd((x - x.mean(0)).astype(np.float64), full_matrices=False)
  same_up_to_signs(initialisers.pca(x, 4), u[:, :4] * s[:4])
  np.testing.assert_allclose(initialisers.pca(x, 4, standardise=True).std(0), 1.0, atol=1e-4)
  u, s, _ = np.linalg.svd(x.astype(np.float64), full_matrices=False)  # raw: uncentred
  same_up_to_signs(initialisers.raw_truncation(x, 4, "svd"), u[:, :4] * s[:4])
  np.testing.assert_array_equal(initialisers.raw_truncation(x, 4, "first"), x[:, :4])


def test_alphafuse_id_embeddings_follow_id_init():
  ds = synthetic()
  for id_init, low, mean, std in (("uniform", 0.0, 0.5, np.sqrt(1 / 12)), ("normal", None, 0.0, 1.0)):
    init = initialisers.build(tiny_config("alphafuse", null_dim=6, id_init=id_init), ds)
    ids = np.asarray(init.module.init(jax.random.key(0))["params"]["id_embedding"])
    assert ids.shape == (1001, 6)
    assert abs(ids.mean() - mean) < 0.03 and abs(ids.std() - std) < 0.03, (id_init, ids.mean())
    if low is not None:
      assert ids.min() >= low and ids.max() < 1.0
  # Alphafuse_SASRec.yaml (DCheol/ACE): init_type normal, nn.init.normal_(weight, 0, 1).
  official = ace_configs.get_config("amazon_beauty_alphafuse_smollm2").init
  assert (official.id_init, official.id_init_std) == ("normal", 1.0)
  with pytest.raises(ValueError, match="config.init.id_init='beta'"):
    initialisers.build(tiny_config("alphafuse", id_init="beta"), ds)


@pytest.mark.parametrize("cover", [False, True])
def test_alphafuse_table_layout(cover):
  init = initialisers.build(tiny_config("alphafuse", null_dim=6, cover=cover), synthetic())
  semantic = init.frozen["frozen_semantic"]
  assert semantic.shape == (1001, 10 if cover else 16)
  np.testing.assert_allclose(semantic[1:].std(0), 1.0, atol=1e-3)  # standardised
  ids = np.random.default_rng(0).normal(size=(1001, 6)).astype(np.float32)
  table = np.asarray(init.module.apply(
      {"params": {"frozen_semantic": semantic, "id_embedding": ids}}))
  assert table.shape == (1001, 16)
  np.testing.assert_array_equal(table[:, :10], semantic[:, :10])
  expected = ids if cover else semantic[:, 10:] + ids
  np.testing.assert_allclose(table[:, 10:], expected, rtol=1e-6)


def test_llmemb_base_is_capped_pca():
  init = initialisers.build(tiny_config("llmemb", pca_dim=1536), synthetic())
  assert init.frozen["frozen_base"].shape == (1001, 48)  # min(1536, d=48, items - 1)
  init = initialisers.build(tiny_config("llmemb", pca_dim=20), synthetic())
  assert init.frozen["frozen_base"].shape == (1001, 20)
  assert init.module.dims == 20 and init.module.hidden == 16


def test_llmemb_adapter_is_the_two_dense_layers():
  module = initialisers.LLMEmbTable(rows=30, dims=12, hidden=5)
  params = module.init(jax.random.key(0))["params"]
  params["frozen_base"] = jax.random.normal(jax.random.key(1), (30, 12))
  params["adapter_0"]["bias"] = jax.random.normal(jax.random.key(2), (6,))
  params["adapter_1"]["bias"] = jax.random.normal(jax.random.key(3), (5,))
  reference = nn.Sequential([nn.Dense(6), nn.Dense(5)])  # flax's own layers, the same parameters
  expected = reference.apply({"params": {"layers_0": params["adapter_0"],
                                         "layers_1": params["adapter_1"]}}, params["frozen_base"])
  table = module.apply({"params": params})
  np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-6)
  assert {k: v.shape for k, v in params["adapter_0"].items()} == {"kernel": (12, 6), "bias": (6,)}
  grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}) ** 2))(params)
  expected_grads = jax.grad(lambda p: jnp.sum(reference.apply({"params": {
      "layers_0": p["adapter_0"], "layers_1": p["adapter_1"]}}, p["frozen_base"]) ** 2))(params)
  for name in ("adapter_0", "adapter_1"):
    for leaf in ("kernel", "bias"):
      np.testing.assert_allclose(grads[name][leaf], expected_grads[name][leaf], rtol=1e-4,
                                 atol=1e-5)


def test_llmemb_adapter_starts_as_llmembs_torch_layers():
  """xavier_normal_ kernels (std sqrt(2 / (fan_in + fan_out))), torch's U(+-1/sqrt(fan_in)) biases."""
  params = initialisers.LLMEmbTable(rows=3, dims=800, hidden=100).init(jax.random.key(0))["params"]
  for name, (fan_in, fan_out) in {"adapter_0": (800, 400), "adapter_1": (400, 100)}.items():
    kernel, bias = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
    assert kernel.shape == (fan_in, fan_out)
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (fan_in + fan_out)), rtol=0.02)
    assert abs(kernel.mean()) < 0.1 * kernel.std()
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.9 * bound
    np.testing.assert_allclose(bias.std(), bound / np.sqrt(3), rtol=0.2)


class _FrozenInGradient:
  """Mixin: the frozen inputs inside the gradient (the table as it was before `frozen_input`)."""

  def frozen_input(self, name, shape):
    return self.param(name, nn.initializers.zeros, shape)


@pytest.mark.parametrize("module", [
    initialisers.WhitenRecTable(rows=30, dims=12, hidden=5, plus=True),
    initialisers.LLMEmbTable(rows=30, dims=12, hidden=5),
    initialisers.AlphaFuseTable(rows=30, hidden=6, null_dim=3)], ids=lambda m: type(m).__name__)
def test_frozen_inputs_are_outside_the_gradient(module):
  """Frozen inputs get an exactly zero gradient; every trainable gradient is unchanged."""
  reference = type("Reference", (_FrozenInGradient, type(module)), {})(
      **{f: getattr(module, f) for f in module.__dataclass_fields__ if f not in ("parent", "name")})
  params = module.init(jax.random.key(0))["params"]
  for i, name in enumerate(n for n in params if n.startswith("frozen_")):
    params[name] = jax.random.normal(jax.random.key(i + 1), params[name].shape)
  loss = lambda m: lambda p: jnp.sum(jnp.sin(m.apply({"params": p})))
  grads, expected = jax.grad(loss(module))(params), jax.grad(loss(reference))(params)
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    names = tuple(str(k.key) for k in path)
    want = functools.reduce(lambda t, k: t[k], names, expected)
    if initialisers.is_frozen(names):
      assert not np.any(grad) and np.any(want)  # the reference does compute it
    else:
      np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-7)


def test_bad_inputs_name_the_key(tmp_path):
  ds = synthetic()
  with pytest.raises(ValueError, match="config.init.kind='bert'"):
    initialisers.build(tiny_config("id", kind="bert"), ds)
  with pytest.raises(ValueError, match="needs config.init.embeddings"):
    initialisers.build(tiny_config("ace", embeddings=""), ds)
  with pytest.raises(FileNotFoundError, match="config.init.embeddings"):
    initialisers.build(tiny_config("ace", embeddings=str(tmp_path / "missing.npy")), ds)
  np.save(tmp_path / "short.npy", np.ones((999, 20), np.float32))
  with pytest.raises(ValueError, match=r"num_items=1000.*\(999, 20\)"):
    initialisers.build(tiny_config("ace", embeddings=str(tmp_path / "short.npy")), ds)
  np.save(tmp_path / "narrow.npy", np.random.default_rng(0).normal(size=(1000, 8)))
  with pytest.raises(ValueError, match="hidden <= min"):
    initialisers.build(tiny_config("llm2x", embeddings=str(tmp_path / "narrow.npy")), ds)
  config = tiny_config("raw")
  config.item_init = str(tmp_path / "table.npy")
  with pytest.raises(ValueError, match="item_init"):
    initialisers.build(config, ds)


def test_precomputed_npy_is_used_as_given(tmp_path):
  x = initialisers.bag_of_words_embeddings(synthetic(), 48)
  np.save(tmp_path / "e.npy", x)
  from_file = initialisers.build(tiny_config("ace", embeddings=str(tmp_path / "e.npy")), synthetic())
  from_bow = initialisers.build(tiny_config("ace"), synthetic())
  np.testing.assert_array_equal(from_file.item_table, from_bow.item_table)
  assert 0.7 < float(np.mean(x @ x.T)) < 0.95  # an anisotropic cone, like LLM embeddings


def test_last_presets_are_the_official_runs_protocol():
  # DCheol/ACE run.sh: --aug=False (one training prefix per user); its --lr is read by no code, so
  # beauty.yaml's learning_rate 1e-4, epochs 400, stopping_step 10 (RecBole's rule) apply.
  assert ace_configs.parse("amazon_beauty_whitenrec_plus_minilm_last") == (
      "amazon_beauty", "whitenrec_plus", "minilm", True)
  assert ace_configs.parse("amazon_toys_id") == ("amazon_toys", "id", "", False)
  c = ace_configs.get_config("amazon_beauty_ace_minilm_last")
  assert (c.train_prefixes, c.learning_rate, c.epochs, c.patience, c.early_stop_rule,
          c.early_stop_metric) == ("last", 1e-4, 400, 10, "recbole", "valid/ndcg@10")
  assert ace_configs.get_config("ml-1m_id_last").early_stop_metric == "valid/ndcg@20"
  # The ACE paper's ML-1M item text: title and genres (not the year).
  assert ace_configs.get_config("ml-1m_ace_minilm").init.embed.text_fields == ("title", "genres")
  ours = ace_configs.get_config("amazon_beauty_ace_minilm")
  assert (ours.train_prefixes, ours.learning_rate, ours.early_stop_rule) == ("all", 5e-4, "strict")


def test_ace_code_definitions_of_the_baselines():
  # DCheol/ACE whitenrec_sasrec.py: X_full[1:] = centred F (the whitening is computed, not used),
  # Linear(d, d/2) -> ReLU -> Linear(d/2, h) with torch's default init.
  ds = synthetic()
  config = tiny_config("whitenrec", definition="ace_code")
  init = initialisers.build(config, ds)
  x = initialisers.llm_embeddings(config, ds)
  frozen = init.frozen["frozen_raw"]
  np.testing.assert_allclose(frozen[1:], x - x.mean(axis=0), atol=1e-6)
  np.testing.assert_array_equal(frozen[0], 0.0)
  params = dict(init.module.init(jax.random.key(0))["params"], frozen_raw=frozen)
  k0, b0 = np.asarray(params["adapter_0"]["kernel"]), np.asarray(params["adapter_0"]["bias"])
  bound = 1 / np.sqrt(48)
  assert k0.shape == (48, 24) and np.abs(k0).max() <= bound and np.abs(k0).max() > 0.8 * bound
  assert np.abs(b0).max() <= bound and np.any(b0)
  p = jax.tree.map(np.asarray, params)
  hidden = np.maximum(frozen @ p["adapter_0"]["kernel"] + p["adapter_0"]["bias"], 0)
  want = hidden @ p["adapter_1"]["kernel"] + p["adapter_1"]["bias"]
  np.testing.assert_allclose(init.module.apply({"params": params}), want, rtol=1e-5, atol=1e-6)
  # llmemb_sasrec.py: the adapter gets SASRec's _init_weights, N(0, .02) and zero biases.
  llmemb = initialisers.build(tiny_config("llmemb", definition="ace_code"), ds)
  params = llmemb.module.init(jax.random.key(0))["params"]
  np.testing.assert_array_equal(params["adapter_0"]["bias"], 0.0)
  assert abs(float(np.std(params["adapter_0"]["kernel"])) - 0.02) < 0.004
  # llm2x_sasrec.py: the PCA table is not rescaled.
  plain = initialisers.build(tiny_config("llm2x", definition="ace_code"), ds).item_table
  x = initialisers.llm_embeddings(tiny_config("llm2x"), ds)
  np.testing.assert_allclose(plain, initialisers.pca(x, 16), rtol=1e-5, atol=1e-6)
  assert abs(initialisers.build(tiny_config("llm2x"), ds).item_table.std() - 0.1) < 1e-4
  with pytest.raises(ValueError, match="no WhitenRec\\+ variant"):
    initialisers.build(tiny_config("whitenrec_plus", definition="ace_code"), ds)
  with pytest.raises(ValueError, match="config.init.definition='authors'"):
    initialisers.build(tiny_config("llm2x", definition="authors"), ds)
