"""Item-table initialisers of SASRec from LLM item embeddings: ACE and the baselines of its paper.

Every kind goes through the same backbone (SASRec `seqrec/sasrec.py`, or GRU4Rec / BERT4Rec by
config.backbone, `seqrec/backbones.py`) and the same train step; the item table that embeds the
inputs is the table that scores the outputs. config.init.kind selects:

  id              RecBole's random table N(0, 0.02) (or config.item_init): the ID-only SASRec.
  raw             trainable table = the LLM embeddings truncated to `hidden` dims: E V_k, E projected
                  on its top-k right singular vectors (uncentred; ACE's lambda -> inf limit, the "raw"
                  spectrum at the same truncation), or with init.raw_method="first" the first k
                  coordinates (Matryoshka-style truncation).
  llm2x           trainable table = centred PCA of E to `hidden` dims (LLM2X / LLMInit: PCA init).
  ace             trainable table = E_ace (lae_jax/ace.py), lambda = init.lam.
  whitenrec       frozen ZCA-whitened E (full whitening) -> trainable MLP [d, h, h] (WhitenRec).
  whitenrec_plus  frozen full and group ZCA-whitened E -> the shared MLP -> attention fusion of the
                  two views (WhitenRec+ / DWSRec's item-side fusion).
  llmemb          frozen PCA of E to init.pca_dim (official 1536) -> trainable adapter
                  Linear(D, D/2) -> Linear(D/2, h) (LLMEmb's recommendation-adaptation stage).
  alphafuse       frozen standardised semantic coordinates (centred PCA, unit variance) + trainable
                  ID embeddings on the last init.null_dim columns (AlphaFuse).
  alpharec        frozen raw E -> trainable Linear(d, d/2) -> LeakyReLU -> Linear(d/2, h) (AlphaRec
                  as the ACE authors run it as a baseline).
raw, llm2x and ace tables are rescaled to the global std init.scale (ACE official 0.1) when > 0.

init.definition="ace_code" switches three baselines to the ACE authors' own files (DCheol/ACE at
f83342a, recbole/model/sequential_recommender/*_sasrec.py), where those differ from the methods'
papers and code (the default, "paper"):
  whitenrec  the ACE code computes a whitening but feeds the CENTRED, unwhitened E to
             Linear(d, d/2) -> ReLU -> Linear(d/2, h) (torch's default init, no dropout);
  llmemb     the adapter's kernels N(0, 0.02) and zero biases (SASRec's _init_weights);
  llm2x      the PCA table is not rescaled (init.scale ignored).
The other kinds are already as the ACE code runs them; whitenrec_plus has no ACE-code variant here.

Facts from the official code (ours is written from them):
- WhitenRec / WhitenRec+ (DWSRec, lzz0007/DWSRec, same authors): whitening centres the embeddings,
  cov = X^T X / N, W = U S^-1/2 U^T (ZCA, "svd" engine); group whitening splits the d columns into G
  contiguous groups and whitens each (README example G=4); the projection is RecBole's
  MLPLayers([d, h, h], dropout 0.2, relu, init N(0, 0.01)): Dropout -> Linear -> ReLU, twice; the two
  views are fused per item by softmax over (x_v @ A) . a (A [h, h], a [h], N(0, 0.02)). Not kept:
  DWSRec's dual-view sequence encoder and its cosine / temperature 0.07 scoring (here: SASRec's dot
  product with the fused table).
- LLMEmb (liuqidong07/LLMEmb): sklearn PCA(n_components=1536) of the (fine-tuned) LLM embeddings,
  frozen, then adapter Linear(D, D/2) -> Linear(D/2, hidden) with no activation, initialised by its
  base model's _init_weights (LLM-ESR models/BaseModel.py): xavier_normal_ on every weight matrix;
  the 1-d biases raise inside that loop and keep torch's default U(+-1/sqrt(fan_in)). NOT included: its
  supervised contrastive fine-tuning of the LLM (stage 1) and the alignment loss to a pretrained
  SASRec's embeddings in stage 2; the adapter sees the embeddings of an off-the-shelf extractor.
- AlphaFuse (Hugo-Chinn/AlphaFuse, models/backbone_SASRec.py): mean-centre, SVD of the covariance,
  standardise (U_k S_k^-1/2) the top `hidden` directions, freeze them; ID embeddings N(0, 1) of
  null_dim (default 64 with hidden 128) columns are ADDED to the last null_dim semantic columns
  (cover=False, the default) or replace them (cover=True). The ACE authors' own AlphaFuse baseline
  (a RecBole port of the same table, DCheol/ACE alphafuse_sasrec.py with Alphafuse_SASRec.yaml
  init_type "normal") draws them from N(0, 1) too, ID_dim = hidden / 2 (id_init="uniform": U[0, 1),
  an option).
- LLM2X: PCA of the LLM embeddings to the hidden size initialises a trainable table.
- AlphaRec (the ACE authors' baseline, DCheol/ACE recbole/model/sequential_recommender/
  alpharec_{sasrec,gru4rec,bert4rec}.py, AlphaRec_Item_Embedding): the raw LLM embeddings (the
  extractor's L2-normalised output; no centring, no PCA) in a frozen nn.Embedding with a zero
  padding row (BERT4Rec: a zero mask row too), through nn.Sequential(Linear(d, int(d / 2)),
  LeakyReLU() (slope 0.01), Linear(int(d / 2), hidden)) for every row, padding and mask included.
  The adapter's init is the backbone's _init_weights, applied after it is built: SASRec and
  BERT4Rec N(0, initializer_range 0.02) weights and zero biases; GRU4Rec xavier_normal_ weights and
  torch's default biases U(+-1/sqrt(fan_in)).
Tables have the backbone's rows (`seqrec.backbones.table_rows`): BERT4Rec's extra last row is its
mask token, zero in every frozen input (as in the ACE authors' BERT4Rec variants).
The frozen parts are parameters named "frozen_*" (zero updates through `is_frozen`, no gradient
through `FrozenInputTable.frozen_input`), so a checkpoint holds them: a LLMEmb run stores its
[items, 1536] base with every checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from recsys_core import dropout
from recsys_core.dataset import Dataset
from lae_jax import ace
from seqrec import backbones
from recsys_core.errors import ConfigError
from recsys_core.precision import HIGHEST

DEFINITIONS = ("paper", "ace_code")
KINDS = ("id", "raw", "llm2x", "whitenrec", "whitenrec_plus", "llmemb", "alphafuse", "alpharec",
         "ace")


@dataclasses.dataclass
class ItemInit:
  """What a kind adds to SASRec.

  Attributes:
    module: the item-table module (SASRec.item_table), or None for SASRec's own nn.Embed table.
    item_table: [num_items, hidden] initial rows 1.. of the nn.Embed table (module None), or None.
    frozen: parameter name of `module` -> [num_items + 1, d] value (row 0 = padding, zeros).
  """
  module: Optional[nn.Module] = None
  item_table: Optional[np.ndarray] = None
  frozen: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Item-table modules: table(deterministic) -> [num_items + 1, hidden].


class FrozenInputTable(nn.Module):
  """Base of the tables computed from frozen inputs."""

  def frozen_input(self, name: str, shape: tuple) -> jax.Array:
    """The frozen parameter `name` (filled by `init_params`, checkpointed, zero updates through
    `is_frozen`) outside the gradient, which the optimizer would discard: for WhitenRec's and
    LLMEmb's [rows, d] inputs a [rows, hidden] x [hidden, d] product per step."""
    return jax.lax.stop_gradient(jnp.asarray(self.param(name, nn.initializers.zeros, shape)))


class WhitenRecTable(FrozenInputTable):
  """MLP(whitened E) (WhitenRec), or the attention fusion of MLP(full) and MLP(group) (WhitenRec+).

  Attributes:
    rows: num_items + 1; dims: d of the whitened embeddings; hidden: output size.
    dropout: MLPLayers dropout (official 0.2); plus: two views (WhitenRec+).
  """
  rows: int
  dims: int
  hidden: int
  dropout: float = 0.2
  plus: bool = False

  @nn.compact
  def __call__(self, deterministic: bool = True) -> jax.Array:
    init = nn.initializers.normal(0.01)  # RecBole MLPLayers init_method="norm"
    dense = [nn.Dense(self.hidden, kernel_init=init, name=f"mlp_{i}") for i in range(2)]
    def mlp(x):
      for layer in dense:
        x = nn.relu(layer(dropout.Dropout(self.dropout)(x, deterministic)))
      return x
    full = mlp(self.frozen_input("frozen_full", (self.rows, self.dims)))
    if not self.plus:
      return full
    group = mlp(self.frozen_input("frozen_group", (self.rows, self.dims)))
    views = jnp.stack([full, group])                                  # [2, rows, hidden]
    kernel = self.param("fusion_kernel", nn.initializers.normal(0.02), (self.hidden, self.hidden))
    query = self.param("fusion_query", nn.initializers.normal(0.02), (self.hidden,))
    weights = jax.nn.softmax(jnp.einsum("vrh,hk,k->vr", views, kernel, query), axis=0)
    return jnp.sum(views * weights[..., None], axis=0)


class LLMEmbTable(FrozenInputTable):
  """adapter(frozen PCA base): Linear(D, D // 2) -> Linear(D // 2, hidden), no activation.

  Computed as base @ (W0 @ W1) + (b0 @ W1 + b1), the same affine map with the [rows, D // 2]
  intermediate never formed: the per-step cost over the whole table falls from rows * D * (D/2 +
  hidden) to rows * D * hidden multiply-adds (2.25x fewer with D = 576, hidden 128). The parameters
  are those of the two nn.Dense layers ("adapter_0", "adapter_1": kernel, bias), initialised as
  LLMEmb's (`xavier_normal`, `torch_default_bias`) or, scheme "normal", as the ACE code's LLMEmb
  baseline (N(0, 0.02) kernels, zero biases).
  """
  rows: int
  dims: int
  hidden: int
  scheme: str = "xavier"

  @nn.compact
  def __call__(self, deterministic: bool = True) -> jax.Array:
    del deterministic  # no dropout in LLMEmb's adapter
    base = self.frozen_input("frozen_base", (self.rows, self.dims))
    k0, b0 = DenseParams(self.dims, self.dims // 2, self.scheme, name="adapter_0")()
    k1, b1 = DenseParams(self.dims // 2, self.hidden, self.scheme, name="adapter_1")()
    return base @ (k0 @ k1) + (b0 @ k1 + b1)


# torch.nn.init.xavier_normal_: N(0, 2 / (fan_in + fan_out)), untruncated.
xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")


def torch_default_bias(fan_in: int):
  """torch.nn.Linear's default bias initialiser: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class DenseParams(nn.Module):
  """The kernel [inputs, features] and bias [features] of an nn.Dense, initialised as LLMEmb's
  torch.nn.Linear layers (scheme "xavier": `xavier_normal` kernel, `torch_default_bias`) or as
  RecBole's SASRec _init_weights (scheme "normal": N(0, 0.02) kernel, zero bias)."""
  inputs: int
  features: int
  scheme: str = "xavier"

  @nn.compact
  def __call__(self) -> tuple:
    if self.scheme == "normal":
      return (self.param("kernel", nn.initializers.normal(0.02), (self.inputs, self.features)),
              self.param("bias", nn.initializers.zeros, (self.features,)))
    return (self.param("kernel", xavier_normal, (self.inputs, self.features)),
            self.param("bias", torch_default_bias(self.inputs), (self.features,)))


class AlphaFuseTable(FrozenInputTable):
  """Frozen standardised semantic columns with trainable ID embeddings on the last null_dim.

  cover=False: table = semantic [rows, hidden] + [0 | id]; cover=True: [semantic | id] with
  semantic [rows, hidden - null_dim]. id_init: "normal" (N(0, id_init_std)) or "uniform" (U[0, 1)).
  """
  rows: int
  hidden: int
  null_dim: int
  cover: bool = False
  id_init: str = "normal"
  id_init_std: float = 1.0

  @nn.compact
  def __call__(self, deterministic: bool = True) -> jax.Array:
    del deterministic
    semantic_dims = self.hidden - self.null_dim if self.cover else self.hidden
    semantic = self.frozen_input("frozen_semantic", (self.rows, semantic_dims))
    init = (nn.initializers.uniform(1.0) if self.id_init == "uniform"
            else nn.initializers.normal(self.id_init_std))
    ids = self.param("id_embedding", init, (self.rows, self.null_dim))
    if self.cover:
      return jnp.concatenate([semantic, ids], axis=1)
    return semantic.at[:, semantic_dims - self.null_dim:].add(ids)


class AlphaRecTable(FrozenInputTable):
  """adapter(frozen raw E): Linear(d, d // 2) -> LeakyReLU(0.01) -> Linear(d // 2, hidden).

  scheme: the adapter's init, "normal" (N(0, 0.02) kernels, zero biases: SASRec's / BERT4Rec's
  _init_weights), "xavier" (`xavier_normal` kernels, `torch_default_bias`: GRU4Rec's) or "torch"
  (torch.nn.Linear's own: kernel and bias U(+-1/sqrt(fan_in))). activation: "leaky_relu"
  (AlphaRec) or "relu" (the ACE code's WhitenRec adapter over its centred input).
  """
  rows: int
  dims: int
  hidden: int
  scheme: str = "normal"
  activation: str = "leaky_relu"

  @nn.compact
  def __call__(self, deterministic: bool = True) -> jax.Array:
    del deterministic  # no dropout in these adapters
    raw = self.frozen_input("frozen_raw", (self.rows, self.dims))
    h = self.dense(self.dims // 2, "adapter_0")(raw)
    h = nn.relu(h) if self.activation == "relu" else nn.leaky_relu(h, negative_slope=0.01)
    return self.dense(self.hidden, "adapter_1")(h)

  def dense(self, features: int, name: str) -> nn.Dense:
    fan_in = self.dims if name == "adapter_0" else self.dims // 2
    if self.scheme == "xavier":
      return nn.Dense(features, kernel_init=xavier_normal, bias_init=torch_default_bias(fan_in),
                      name=name)
    if self.scheme == "torch":  # kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), as the bias
      return nn.Dense(features, kernel_init=torch_default_bias(fan_in),
                      bias_init=torch_default_bias(fan_in), name=name)
    return nn.Dense(features, kernel_init=nn.initializers.normal(0.02), name=name)


def is_frozen(path: tuple) -> bool:
  """Key-path predicate of the frozen initialiser parameters (for recsys_core.train.masked_optimizer)."""
  return bool(path) and str(path[-1]).startswith("frozen_")


# ---------------------------------------------------------------------------------------------
# Host-side transforms of E [n, d] (spectral decompositions through lae_jax.ace.gram_spectrum).


def l2_normalize(x: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(norms, 1e-12)


def principal_components(x: np.ndarray) -> tuple:
  """(mean [d], V [d, d] principal directions by decreasing variance, variances [d]) of the rows,
  covariance X_c^T X_c / n."""
  mean = x.mean(axis=0)
  spectrum = ace.gram_spectrum(jnp.asarray(x - mean, jnp.float32))
  return mean, np.asarray(spectrum.vectors), np.asarray(spectrum.squared) / len(x)


def pca(x: np.ndarray, k: int, standardise: bool = False) -> np.ndarray:
  """[n, k] centred principal coordinates (unit variance each with `standardise`)."""
  mean, vectors, variances = principal_components(x)
  coords = (x - mean) @ vectors[:, :k]
  return coords / np.sqrt(variances[:k]) if standardise else coords


def zca_whiten(x: np.ndarray, groups: int = 1, eps: float = 1e-6) -> np.ndarray:
  """ZCA whitening X_c U S^-1/2 U^T of each of `groups` contiguous column groups (1: full).

  eps: variances are floored at eps * the largest (the official code has no floor; it only
  matters for numerically rank-deficient groups).
  """
  out = np.empty_like(x)
  for columns in np.array_split(np.arange(x.shape[1]), groups):
    mean, vectors, variances = principal_components(x[:, columns])
    scale = 1.0 / np.sqrt(np.maximum(variances, eps * variances.max()))
    out[:, columns] = ((x[:, columns] - mean) @ vectors) * scale @ vectors.T
  return out


def raw_truncation(x: np.ndarray, k: int, method: str) -> np.ndarray:
  """[n, k] E V_k (top-k right singular directions, uncentred) or the first k coordinates."""
  if method == "svd":
    return np.asarray(jnp.matmul(jnp.asarray(x, jnp.float32), ace.gram_spectrum(x).vectors[:, :k],
                                 precision=HIGHEST))
  if method == "first":
    return x[:, :k]
  raise ConfigError(f"config.init.raw_method={method!r}: use 'svd' or 'first'")


def with_padding_row(x: np.ndarray, rows: Optional[int] = None) -> np.ndarray:
  """[rows, d] float32 (default n + 1): a zero row 0 (the padding id) above `x`, and zero rows
  below it up to `rows` (BERT4Rec's mask row)."""
  rows = len(x) + 1 if rows is None else rows
  return np.concatenate([np.zeros((1, x.shape[1]), np.float32), x.astype(np.float32),
                         np.zeros((rows - len(x) - 1, x.shape[1]), np.float32)])


# ---------------------------------------------------------------------------------------------
# LLM item embeddings.


def bag_of_words_embeddings(ds: Dataset, dims: int = 96, seed: int = 0,
                            common: float = 2.0) -> np.ndarray:
  """[num_items, dims] float32 stand-in for LLM embeddings built from the item text, L2-normalised.

  Each word gets a random Gaussian vector; an item is the mean of its words' vectors plus `common`
  times one shared unit direction (the "cone" of LLM embeddings: mean pairwise cosine ~0.8 at 2.0),
  so items sharing vocabulary (the synthetic data's clusters) are close and the matrix is anisotropic.
  """
  fields = [f for f in ("title", "brand", "categories") if f in ds.item_text] or list(ds.item_text)
  if not fields:
    raise ConfigError(f"dataset {ds.name!r} has no item text for the 'bow' embeddings")
  docs = [re.findall(r"\w+", " ".join(str(ds.item_text[f][i] or "") for f in fields).lower())
          for i in range(ds.num_items)]
  vocab = {w: j for j, w in enumerate(sorted({w for doc in docs for w in doc}))}
  rng = np.random.default_rng(seed)
  words = rng.normal(size=(len(vocab), dims)) / np.sqrt(dims)
  direction = rng.normal(size=dims)
  direction /= np.linalg.norm(direction)
  x = np.stack([words[[vocab[w] for w in doc]].mean(axis=0) if doc else np.zeros(dims)
                for doc in docs])
  return l2_normalize(l2_normalize(x) + common * direction).astype(np.float32)


def llm_embeddings(config: ml_collections.ConfigDict, ds: Dataset) -> np.ndarray:
  """[num_items, d] float32 item embeddings named by config.init.embeddings, row i = item i.

  config.init.embeddings: a .npy path; "bow" (`bag_of_words_embeddings`); or an extractor of the
  embedding cache (recsys_core/embed: minilm, smollm2, tiny_bert, tiny_llama), whose settings come in
  config.init.embed (configs/embed.py's <dataset>_<extractor>, attached by configs/ace.py); a cache
  miss computes and stores the matrix first.
  """
  source = config.init.embeddings
  if not source:
    raise ConfigError(f"config.init.kind={config.init.kind!r} needs config.init.embeddings: a .npy "
                     "[num_items, d] path, bow, or an extractor (minilm, smollm2, ...)")
  from recsys_core.embed import run as embed_run  # pylint: disable=import-outside-toplevel
  x = embed_run.embeddings_by_name(
      source, config.init.get("embed"), ds, "config.init.embeddings",
      lambda d: bag_of_words_embeddings(d, config.init.bow_dims, config.init.bow_seed))
  x = x.astype(np.float32)
  return l2_normalize(x) if config.init.normalize else x


# ---------------------------------------------------------------------------------------------
# The initialisers.


def build(config: ml_collections.ConfigDict, ds: Dataset) -> Optional[ItemInit]:
  """The item-table initialiser of config.init.kind for `ds` (None for "id": SASRec unchanged)."""
  c, hidden = config.init, config.model.hidden
  if c.kind not in KINDS:
    raise ConfigError(f"config.init.kind={c.kind!r}: use one of {', '.join(KINDS)}")
  if c.kind == "id":
    return None
  if config.item_init:
    raise ConfigError("config.item_init gives the table of init.kind='id'; for "
                     f"init.kind={c.kind!r} leave it empty")
  x = llm_embeddings(config, ds)
  n, d = x.shape
  rows = backbones.table_rows(config, n)
  if c.kind in ("raw", "llm2x", "ace", "alphafuse") and hidden > min(n, d):
    raise ConfigError(f"init.kind={c.kind!r} keeps hidden={hidden} directions of [{n}, {d}] "
                     f"embeddings: needs hidden <= min(items, dims) (config.model.hidden)")
  if c.definition not in DEFINITIONS:
    raise ConfigError(f"config.init.definition={c.definition!r}: use one of "
                      f"{', '.join(DEFINITIONS)}")
  ace_code = c.definition == "ace_code"
  if ace_code and c.kind == "whitenrec_plus":
    raise ConfigError("config.init.definition='ace_code' has no WhitenRec+ variant; use "
                      "init.kind='whitenrec' or definition='paper'")
  if c.kind in ("raw", "llm2x", "ace"):
    if c.kind == "ace":
      table = np.asarray(ace.ace_item_table(x, c.lam, hidden, c.scale))
    else:
      table = raw_truncation(x, hidden, c.raw_method) if c.kind == "raw" else pca(x, hidden)
      if c.scale > 0 and not (ace_code and c.kind == "llm2x"):
        table = np.asarray(ace.rescale_std(jnp.asarray(table), c.scale))
    return ItemInit(item_table=np.asarray(table, np.float32))
  if c.kind == "whitenrec" and ace_code:
    if d < 2:
      raise ConfigError(f"init.kind='whitenrec' (ace_code) halves the {d} embedding dims: needs "
                        "d >= 2")
    centred = x - x.mean(axis=0, keepdims=True)
    return ItemInit(module=AlphaRecTable(rows, d, hidden, "torch", "relu"),
                    frozen={"frozen_raw": with_padding_row(centred, rows)})
  if c.kind in ("whitenrec", "whitenrec_plus"):
    plus = c.kind == "whitenrec_plus"
    frozen = {"frozen_full": with_padding_row(zca_whiten(x, 1, c.whiten_eps), rows)}
    if plus:
      frozen["frozen_group"] = with_padding_row(zca_whiten(x, c.whiten_groups, c.whiten_eps), rows)
    return ItemInit(module=WhitenRecTable(rows, d, hidden, c.mlp_dropout, plus), frozen=frozen)
  if c.kind == "llmemb":
    dims = min(c.pca_dim, d, n - 1)
    return ItemInit(module=LLMEmbTable(rows, dims, hidden, "normal" if ace_code else "xavier"),
                    frozen={"frozen_base": with_padding_row(pca(x, dims), rows)})
  if c.kind == "alpharec":
    if d < 2:
      raise ConfigError(f"init.kind='alpharec' halves the {d} embedding dims: needs d >= 2 "
                        "(config.init.embeddings)")
    scheme = "xavier" if backbones.name(config) == "gru4rec" else "normal"
    return ItemInit(module=AlphaRecTable(rows, d, hidden, scheme),
                    frozen={"frozen_raw": with_padding_row(x, rows)})
  null_dim = c.null_dim or hidden // 2  # alphafuse
  if not 0 < null_dim <= hidden:
    raise ConfigError(f"config.init.null_dim={c.null_dim} must lie in 1..hidden={hidden}")
  if c.id_init not in ("normal", "uniform"):
    raise ConfigError(f"config.init.id_init={c.id_init!r}: use 'normal' or 'uniform'")
  semantic = pca(x, hidden - null_dim if c.cover else hidden, standardise=True)
  return ItemInit(module=AlphaFuseTable(rows, hidden, null_dim, c.cover, c.id_init, c.id_init_std),
                  frozen={"frozen_semantic": with_padding_row(semantic, rows)})


def init_params(model: nn.Module, seed: int, init: Optional[ItemInit]) -> Any:
  """The backbone's parameters with the initialiser's table (or frozen parts) in place."""
  if init is None or init.module is None:
    return backbones.init_params(model, seed, None if init is None else init.item_table)
  params = backbones.init_params(model, seed)
  params = jax.tree.map(lambda x: x, params)  # a copy we may edit
  for name, value in init.frozen.items():
    expected = params["item_table"][name].shape
    if value.shape != expected:
      raise ValueError(f"frozen {name} has shape {value.shape}, expected {expected}")
    params["item_table"][name] = jnp.asarray(value, jnp.float32)
  return params


def initial_table(model: nn.Module, params: Any) -> np.ndarray:
  """[num_items, hidden] float32 item table the model starts from (padding and mask rows
  dropped)."""
  table = model.apply({"params": params}, method=type(model).table)
  return np.asarray(table, np.float32)[1:model.num_items + 1]
