"""seqrec/gru4rec.py, bert4rec.py, cloze.py, backbones.py and the AlphaRec initialiser.

Parity with RecBole on the same weights: RecBole is not installed here, so each model is checked
against a PyTorch transcription of RecBole's forward pass, loss and full-sort scoring (GRU4Rec: with
torch's own nn.GRU), written below from RecBole's gru4rec.py / bert4rec.py / layers.py; when
`recbole` is importable the same weights also go through RecBole's own classes.
Also: cloze masking against a transcription of RecBole's MaskItemSequence, packed == unpacked,
8 fake devices == 1, kill -9 + resume == uninterrupted (and --mode=eval), every initialiser feeding
every backbone, AlphaRec against numpy, and bad input.
"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import ace as ace_configs
from configs import bert4rec as bert4rec_configs
from configs import gru4rec as gru4rec_configs
from recsys_core import readers
from recsys_core import train
from recsys_core.errors import ConfigError
from seqrec import backbones
from seqrec import bert4rec
from seqrec import cloze
from seqrec import data as data_lib
from seqrec import gru4rec
from seqrec import initialisers
from seqrec import run

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITEMS, MAX_LEN = 11, 6


def _inputs():
  """[4, 6] right-padded shifted ids: lengths 6, 3, 1, 5."""
  return np.array([[3, 5, 1, 11, 2, 7], [4, 4, 9, 0, 0, 0], [8, 0, 0, 0, 0, 0],
                   [2, 6, 10, 1, 3, 0]], np.int32)


def _perturbed(params, scale=0.1, seed=1):
  """Every leaf nudged, so biases, LayerNorm parameters and output_bias are exercised too."""
  rng = np.random.default_rng(seed)  # numpy: eager jax.random would compile once per shape
  return jax.tree.map(lambda x: (np.asarray(x) + scale * rng.normal(size=x.shape)).astype(
      np.float32), params)


def _scores(model, params, seq):
  """model.scores under jit (eager Flax would compile every primitive on its own)."""
  return jax.jit(lambda p, s: model.apply({"params": p}, s, method=type(model).scores))(params, seq)


def _loss(loss_fn, model, params, batch):
  return jax.jit(lambda p, b: loss_fn(model, p, b, jax.random.key(0)))(params, batch)


def _t(x, transpose=False):
  x = np.asarray(x, np.float64)
  return torch.tensor(x.T if transpose else x)


def _gather(output, index):
  """RecBole's SequentialRecommender.gather_indexes."""
  index = index.view(-1, 1, 1).expand(-1, -1, output.shape[-1])
  return output.gather(dim=1, index=index).squeeze(1)


# ---------------------------------------------------------------------------------------------
# GRU4Rec


def _gru4rec(num_layers=2):
  model = gru4rec.GRU4Rec(num_items=ITEMS, max_len=MAX_LEN, hidden=8, gru_hidden=12,
                          num_layers=num_layers, dropout=0.0)
  return model, _perturbed(backbones.init_params(model, 0), 0.3)


def _torch_gru4rec_state(params, num_layers):
  """RecBole GRU4Rec's parameters (float64) from ours: torch's [3H, in] = our kernel^T."""
  state = {"item_embedding.weight": _t(params["item_embedding"]["embedding"]),
           "dense.weight": _t(params["dense"]["kernel"], True),
           "dense.bias": _t(params["dense"]["bias"])}
  for i in range(num_layers):
    state[f"gru_layers.weight_ih_l{i}"] = _t(params[f"gru_{i}"]["input_kernel"], True)
    state[f"gru_layers.weight_hh_l{i}"] = _t(params[f"gru_{i}"]["recurrent_kernel"], True)
  return state


class TorchGRU4Rec(torch.nn.Module):
  """RecBole's GRU4Rec (forward, full_sort_predict, CE calculate_loss), eval mode."""

  def __init__(self, n_items, embedding_size, hidden_size, num_layers):
    super().__init__()
    self.item_embedding = torch.nn.Embedding(n_items, embedding_size, padding_idx=0)
    self.gru_layers = torch.nn.GRU(input_size=embedding_size, hidden_size=hidden_size,
                                   num_layers=num_layers, bias=False, batch_first=True)
    self.dense = torch.nn.Linear(hidden_size, embedding_size)

  def forward(self, item_seq, item_seq_len):
    gru_output, _ = self.gru_layers(self.item_embedding(item_seq))
    return _gather(self.dense(gru_output), item_seq_len - 1)

  def full_sort_predict(self, item_seq, item_seq_len):
    return self.forward(item_seq, item_seq_len) @ self.item_embedding.weight.T

  def calculate_loss(self, item_seq, item_seq_len, pos_items):
    logits = self.full_sort_predict(item_seq, item_seq_len)
    return torch.nn.functional.cross_entropy(logits, pos_items)


def test_gru4rec_scores_and_loss_match_torch_recbole():
  model, params = _gru4rec()
  reference = TorchGRU4Rec(ITEMS + 1, 8, 12, 2).double().eval()
  reference.load_state_dict(_torch_gru4rec_state(params, 2))
  seq = _inputs()
  lengths = torch.tensor((seq > 0).sum(1))
  ours = _scores(model, params, seq)
  chex.assert_shape(ours, (4, ITEMS + 1))
  with torch.no_grad():
    expected = reference.full_sort_predict(torch.tensor(seq).long(), lengths).numpy()
    targets = np.array([1, 2, 11, 0], np.int32)
    expected_loss = float(reference.calculate_loss(torch.tensor(seq).long(), lengths,
                                                   torch.tensor(targets).long()))
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
  loss, aux = _loss(gru4rec.ce_loss, model, params, {"inputs": seq, "targets": targets,
                                                     "weights": np.ones(4, np.float32)})
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  assert float(aux["examples"]) == 4


def test_gru4rec_recbole_initialisation():
  model = gru4rec.GRU4Rec(num_items=3000, hidden=64, gru_hidden=100, num_layers=2)
  params = backbones.init_params(model, 0)
  table = np.asarray(params["item_embedding"]["embedding"])
  np.testing.assert_allclose(table.std(), np.sqrt(2 / (3001 + 64)), rtol=0.02)  # xavier_normal
  w_ih = np.asarray(params["gru_0"]["input_kernel"])                            # xavier_uniform
  np.testing.assert_allclose(np.abs(w_ih).max(), np.sqrt(6 / (64 + 300)), rtol=0.02)
  w_hh_1 = np.asarray(params["gru_1"]["recurrent_kernel"])                      # torch default
  np.testing.assert_allclose(np.abs(w_hh_1).max(), 1 / np.sqrt(100), rtol=0.02)
  dense = params["dense"]                                                       # torch Linear
  assert np.abs(dense["kernel"]).max() <= 0.1 and np.abs(dense["bias"]).max() <= 0.1
  assert np.abs(dense["kernel"]).max() > 0.09


# ---------------------------------------------------------------------------------------------
# BERT4Rec


def _bert4rec():
  model = bert4rec.BERT4Rec(num_items=ITEMS, max_len=MAX_LEN, hidden=8, inner=16, num_layers=2,
                            num_heads=2, dropout=0.0, attention_dropout=0.0)
  return model, _perturbed(backbones.init_params(model, 0), 0.1)


def _torch_bert4rec(params, num_layers=2, num_heads=2, eps=1e-12):
  """RecBole 1.2's BERT4Rec (forward, full_sort_predict with reconstruct_test_data, CE
  calculate_loss) in float64 torch, eval mode, on our parameters."""
  p = jax.tree.map(lambda x: torch.tensor(np.asarray(x, np.float64)), params)
  dense = lambda x, d: x @ d["kernel"] + d["bias"]
  norm = lambda x, d: torch.nn.functional.layer_norm(x, x.shape[-1:], d["scale"], d["bias"], eps)
  gelu = lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
  table = p["item_embedding"]["embedding"]
  n_items = ITEMS + 1                       # RecBole's n_items counts the padding id
  mask_token = n_items

  def forward(item_seq):
    b, n = item_seq.shape
    h = norm(table[item_seq] + p["position_embedding"]["embedding"][torch.arange(n)][None],
             p["layer_norm"])
    extended = (item_seq != 0)[:, None, None, :]                     # bidirectional
    mask = torch.where(extended, 0.0, -10000.0).double()
    for i in range(num_layers):
      a, f = p[f"attention_{i}"], p[f"feed_forward_{i}"]
      d = h.shape[-1] // num_heads
      split = lambda x: x.view(b, n, num_heads, d).permute(0, 2, 1, 3)
      q, k, v = (split(dense(h, a[name])) for name in ("query", "key", "value"))
      s = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + mask, dim=-1)
      ctx = (s @ v).permute(0, 2, 1, 3).reshape(b, n, -1)
      h = norm(dense(ctx, a["dense"]) + h, a["layer_norm"])
      h = norm(dense(gelu(dense(h, f["dense_1"])), f["dense_2"]) + h, f["layer_norm"])
    return norm(gelu(dense(h, p["output_ffn"])), p["output_ln"])

  def reconstruct_test_data(item_seq, item_seq_len):
    item_seq = torch.cat((item_seq, torch.zeros(item_seq.size(0), 1, dtype=torch.long)), dim=-1)
    for batch_id, last_position in enumerate(item_seq_len):
      item_seq[batch_id][last_position] = mask_token
    return item_seq[:, 1:]

  def full_sort_predict(item_seq, item_seq_len):
    seq_output = _gather(forward(reconstruct_test_data(item_seq, item_seq_len)), item_seq_len - 1)
    return seq_output @ table[:n_items].T + p["output_bias"]

  def calculate_loss(masked_item_seq, pos_items, masked_index):
    seq_output = forward(masked_item_seq)
    multi_hot = torch.zeros(masked_index.numel(), masked_item_seq.size(-1), dtype=torch.float64)
    multi_hot[torch.arange(masked_index.numel()), masked_index.view(-1)] = 1
    seq_output = torch.bmm(multi_hot.view(*masked_index.shape, -1), seq_output)
    logits = seq_output @ table[:n_items].T + p["output_bias"]
    targets = (masked_index > 0).double().view(-1)
    nll = torch.nn.functional.cross_entropy(logits.view(-1, n_items), pos_items.view(-1),
                                            reduction="none")
    return torch.sum(nll * targets) / torch.sum(targets)

  return full_sort_predict, calculate_loss


def test_bert4rec_scores_match_torch_recbole_with_the_mask_appended():
  model, params = _bert4rec()
  seq = _inputs()
  ours = _scores(model, params, seq)
  chex.assert_shape(ours, (4, ITEMS + 1))
  full_sort_predict, _ = _torch_bert4rec(params)
  with torch.no_grad():
    expected = full_sort_predict(torch.tensor(seq).long(), torch.tensor((seq > 0).sum(1)))
  np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-5, atol=1e-5)
  # RecBole's reconstruct_test_data drops the first column, the oldest item of every history:
  masked, at = bert4rec.append_mask(jnp.asarray(seq[1:2]), ITEMS + 1)
  np.testing.assert_array_equal(masked, [[4, 9, 12, 0, 0, 0]])
  assert int(at[0]) == 2


def test_bert4rec_cloze_loss_matches_torch_recbole():
  model, params = _bert4rec()
  windows = cloze.Windows(items=np.arange(40, dtype=np.int32) % ITEMS,
                          ends=np.array([6, 20, 31, 40]), lengths=np.array([6, 5, 3, 6]),
                          max_len=MAX_LEN)
  batches = cloze.ClozeBatches(windows, 4, seed=3, mask_id=ITEMS + 1, mask_ratio=0.5, ft_ratio=0.0)
  batch = next(batches.epoch(0))
  assert batch["weights"].sum() >= 3 and (batch["inputs"] == ITEMS + 1).any()
  loss, aux = _loss(bert4rec.cloze_loss, model, params, batch)
  _, calculate_loss = _torch_bert4rec(params)
  columns = batch["index"] - np.arange(4)[:, None] * MAX_LEN     # RecBole's MASK_INDEX
  with torch.no_grad():
    expected = calculate_loss(torch.tensor(batch["inputs"]).long(),
                              torch.tensor(batch["targets"]).long(), torch.tensor(columns).long())
  np.testing.assert_allclose(loss, float(expected), rtol=1e-5)
  assert float(aux["targets"]) == batch["weights"].sum()


def test_bert4rec_table_has_a_mask_row_and_recbole_init():
  model = bert4rec.BERT4Rec(num_items=3000, hidden=64, inner=256)
  params = backbones.init_params(model, 0)
  table = np.asarray(params["item_embedding"]["embedding"])
  assert table.shape == (3002, 64) and abs(table.std() - 0.02) < 1e-3
  np.testing.assert_array_equal(params["output_bias"], np.zeros(3001))
  np.testing.assert_array_equal(params["output_ffn"]["bias"], 0.0)
  given = np.ones((3000, 64), np.float32)
  replaced = np.asarray(backbones.init_params(model, 0, given)["item_embedding"]["embedding"])
  np.testing.assert_array_equal(replaced[1:3001], given)
  np.testing.assert_array_equal(replaced[[0, 3001]], table[[0, 3001]])  # padding and mask kept


class _Config(dict):
  """RecBole's Config as its models read it (item access, and attributes as in 1.2)."""
  __getattr__ = dict.__getitem__


def _real_recbole_config(**model):
  return _Config(USER_ID_FIELD="user_id", ITEM_ID_FIELD="item_id", LIST_SUFFIX="_list",
                 ITEM_LIST_LENGTH_FIELD="item_length", NEG_PREFIX="neg_",
                 MAX_ITEM_LIST_LENGTH=MAX_LEN, device=torch.device("cpu"), loss_type="CE",
                 MASK_ITEM_SEQ="Mask_item_id_list", POS_ITEMS="Pos_item_id",
                 NEG_ITEMS="Neg_item_id", MASK_INDEX="MASK_INDEX", **model)


class _Dataset:
  def num(self, field):
    assert field == "item_id"
    return ITEMS + 1


def test_real_recbole_on_the_same_weights():
  """RecBole's own GRU4Rec and BERT4Rec classes (only where recbole is installed)."""
  recbole_gru4rec = pytest.importorskip("recbole.model.sequential_recommender.gru4rec")
  recbole_bert4rec = pytest.importorskip("recbole.model.sequential_recommender.bert4rec")
  seq = torch.tensor(_inputs()).long()
  interaction = {"item_id_list": seq, "item_length": (seq > 0).sum(1)}

  model, params = _gru4rec()
  reference = recbole_gru4rec.GRU4Rec(_real_recbole_config(
      embedding_size=8, hidden_size=12, num_layers=2, dropout_prob=0.0, dropout=0.0), _Dataset())
  reference = reference.double().eval()
  reference.load_state_dict(_torch_gru4rec_state(params, 2))
  with torch.no_grad():
    expected = reference.full_sort_predict(interaction).numpy()
  ours = _scores(model, params, _inputs())
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)

  model, params = _bert4rec()
  reference = recbole_bert4rec.BERT4Rec(_real_recbole_config(
      n_layers=2, n_heads=2, hidden_size=8, inner_size=16, hidden_dropout_prob=0.0,
      attn_dropout_prob=0.0, hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.02,
      mask_ratio=0.2), _Dataset()).double().eval()
  state = {"item_embedding.weight": _t(params["item_embedding"]["embedding"]),
           "position_embedding.weight": _t(params["position_embedding"]["embedding"]),
           "LayerNorm.weight": _t(params["layer_norm"]["scale"]),
           "LayerNorm.bias": _t(params["layer_norm"]["bias"]),
           "output_ffn.weight": _t(params["output_ffn"]["kernel"], True),
           "output_ffn.bias": _t(params["output_ffn"]["bias"]),
           "output_ln.weight": _t(params["output_ln"]["scale"]),
           "output_ln.bias": _t(params["output_ln"]["bias"]),
           "output_bias": _t(params["output_bias"])}
  for i in range(2):
    a, f = params[f"attention_{i}"], params[f"feed_forward_{i}"]
    prefix = f"trm_encoder.layer.{i}."
    for name in ("query", "key", "value", "dense"):
      state[prefix + f"multi_head_attention.{name}.weight"] = _t(a[name]["kernel"], True)
      state[prefix + f"multi_head_attention.{name}.bias"] = _t(a[name]["bias"])
    state[prefix + "multi_head_attention.LayerNorm.weight"] = _t(a["layer_norm"]["scale"])
    state[prefix + "multi_head_attention.LayerNorm.bias"] = _t(a["layer_norm"]["bias"])
    for name in ("dense_1", "dense_2"):
      state[prefix + f"feed_forward.{name}.weight"] = _t(f[name]["kernel"], True)
      state[prefix + f"feed_forward.{name}.bias"] = _t(f[name]["bias"])
    state[prefix + "feed_forward.LayerNorm.weight"] = _t(f["layer_norm"]["scale"])
    state[prefix + "feed_forward.LayerNorm.bias"] = _t(f["layer_norm"]["bias"])
  reference.load_state_dict(state)
  with torch.no_grad():
    expected = reference.full_sort_predict(interaction).numpy()
  ours = _scores(model, params, _inputs())
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Cloze examples


def _recbole_mask_item_sequence(windows, seed, epoch, b, mask_id, mask_ratio, ft_ratio, slots):
  """RecBole's MaskItemSequence.__call__ / _append_mask_last, its `random.random()` draws replaced
  by the same numpy draws ClozeBatches makes (ft first, then one per position)."""
  rng = np.random.default_rng([seed, epoch, b])
  pad = lambda sequence: ([0] * (slots - len(sequence)) + sequence)[-slots:]
  masked_seqs, pos_items, masked_index = [], [], []
  if rng.random() < ft_ratio:
    for instance in windows.tolist():
      lens = sum(1 for item in instance if item)
      mask_seq = list(instance)
      mask_seq[lens - 1] = mask_id
      masked_seqs.append(mask_seq)
      pos_items.append(pad([instance[lens - 1]]))
      masked_index.append(pad([lens - 1]))
  else:
    draws = rng.random(windows.shape)
    for row, instance in enumerate(windows.tolist()):
      masked_sequence, pos_item, index_ids = list(instance), [], []
      for index_id, item in enumerate(instance):
        if item == 0:
          break
        if draws[row, index_id] < mask_ratio:
          pos_item.append(item)
          masked_sequence[index_id] = mask_id
          index_ids.append(index_id)
      masked_seqs.append(masked_sequence)
      pos_items.append(pad(pos_item))
      masked_index.append(pad(index_ids))
  return np.array(masked_seqs), np.array(pos_items), np.array(masked_index)


@pytest.fixture(scope="module")
def synthetic():
  return readers.load_dataset("synthetic", "")


@pytest.mark.parametrize("ft_ratio", [0.0, 0.5, 1.0])
def test_cloze_batches_are_recbole_mask_item_sequence(synthetic, ft_ratio):
  windows = cloze.cloze_windows(synthetic, 20, "prefixes")
  assert len(windows) == len(data_lib.train_examples(synthetic, 20))
  batches = cloze.ClozeBatches(windows, 64, seed=5, mask_id=1001, mask_ratio=0.3,
                               ft_ratio=ft_ratio)
  order = np.random.default_rng([5, 2]).permutation(len(windows))
  seen_ft = set()
  for b, batch in zip(range(6), batches.epoch(2)):
    plain = windows.batch(order[b * 64:(b + 1) * 64])
    inputs, pos_items, masked_index = _recbole_mask_item_sequence(
        plain, 5, 2, b, 1001, 0.3, ft_ratio, slots=6)
    np.testing.assert_array_equal(batch["inputs"], inputs)
    np.testing.assert_array_equal(batch["index"] - np.arange(64)[:, None] * 20, masked_index)
    np.testing.assert_array_equal(batch["targets"], pos_items)
    np.testing.assert_array_equal(batch["weights"], masked_index > 0)  # column 0: never predicted
    seen_ft.add(bool(((inputs == 1001).sum(1) == 1).all()))
  assert seen_ft == ({True} if ft_ratio == 1 else {False} if ft_ratio == 0 else {True, False})


def test_last_prefix_cloze_windows_are_one_per_user(synthetic):
  # train_prefixes="last" (the official ACE runs' --aug=False): BERT4Rec sees each user's last
  # training input, seq[:t-1] (the inputs of the last next-item example).
  every = cloze.cloze_windows(synthetic, 20, "prefixes")
  last = cloze.cloze_windows(synthetic, 20, "prefixes", "last")
  examples = data_lib.train_examples(synthetic, 20, "last")
  assert len(last) == len(examples) == 2000 < len(every)
  np.testing.assert_array_equal(last.ends, examples.targets)
  np.testing.assert_array_equal(last.lengths, examples.lengths)
  assert set(last.ends) <= set(every.ends)


def test_cloze_batches_resume_exactly_and_pack_losslessly(synthetic):
  windows = cloze.cloze_windows(synthetic, 20, "sequences")
  assert len(windows) == 2000 and windows.lengths.max() == 20   # one window per user
  args = dict(seed=1, mask_id=1001, mask_ratio=0.2, ft_ratio=0.5)
  full = list(cloze.ClozeBatches(windows, 256, **args).epoch(3))
  resumed = list(cloze.ClozeBatches(windows, 256, **args).epoch(3, start=5))
  assert len(full) == 8 and full[-1]["weights"][2000 - 7 * 256:].sum() == 0   # padded last batch
  for a, b in zip(full[5:], resumed):
    chex.assert_trees_all_equal(a, b)
  packed = list(cloze.ClozeBatches(windows, 256, pack_multiple=8, **args).epoch(3))
  for plain, pack in zip(full, packed):
    assert pack["inputs"].shape[0] % 8 == 0 and pack["inputs"].shape[0] < 256
    np.testing.assert_array_equal(pack["inputs"].ravel()[pack["index"]],
                                  plain["inputs"].ravel()[plain["index"]])
    np.testing.assert_array_equal(pack["targets"], plain["targets"])
    np.testing.assert_array_equal(pack["weights"], plain["weights"])


def _nudged_init(model, seq):
  params = jax.jit(model.init)(jax.random.PRNGKey(0), seq)["params"]
  return _perturbed(params, 0.3)


@pytest.mark.slow  # SASRec's packing test (test_sasrec.py) runs by default
def test_packed_rows_give_the_unpacked_loss_and_gradient(synthetic):
  windows = cloze.cloze_windows(synthetic, 8, "sequences")
  args = dict(seed=0, mask_id=1001, mask_ratio=0.4, ft_ratio=0.0)
  plain = next(cloze.ClozeBatches(windows, 16, **args).epoch(0))
  packed = next(cloze.ClozeBatches(windows, 16, pack_multiple=4, **args).epoch(0))
  model = bert4rec.BERT4Rec(num_items=1000, max_len=8, hidden=8, inner=16, dropout=0.0,
                            attention_dropout=0.0)
  params = _nudged_init(model, plain["inputs"])
  value = jax.jit(lambda batch: jax.value_and_grad(
      lambda p: bert4rec.cloze_loss(model, p, batch, jax.random.key(1))[0])(params))
  (loss, grads), (packed_loss, packed_grads) = value(plain), value(packed)
  np.testing.assert_allclose(packed_loss, loss, rtol=1e-6)
  chex.assert_trees_all_close(packed_grads, grads, atol=1e-6, rtol=1e-5)

  examples = data_lib.train_examples(synthetic, 16)
  plain = next(data_lib.Batches(examples, 16, 0).epoch(0))
  packed = next(data_lib.Batches(examples, 16, 0, pack_multiple=2).epoch(0))
  assert packed["inputs"].shape[0] < 16
  model = gru4rec.GRU4Rec(num_items=1000, max_len=16, hidden=8, gru_hidden=8, dropout=0.0)
  params = _nudged_init(model, plain["inputs"])
  value = jax.jit(lambda batch: jax.value_and_grad(
      lambda p: gru4rec.ce_loss(model, p, batch, jax.random.key(1))[0])(params))
  (loss, grads), (packed_loss, packed_grads) = value(plain), value(packed)
  np.testing.assert_allclose(packed_loss, loss, rtol=1e-6)
  chex.assert_trees_all_close(packed_grads, grads, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Initialisers on every backbone; AlphaRec.


def _tiny(kind, backbone):
  config = ace_configs.get_config("synthetic_id" if kind == "id" else f"synthetic_{kind}_bow")
  config.backbone = backbone
  config.model.update(hidden=8, inner=16, num_layers=1, gru_hidden=8)
  config.max_len = 8
  config.init.bow_dims = 24
  return config


@pytest.mark.parametrize("backbone", ["gru4rec", "bert4rec"])
def test_every_initialiser_feeds_the_backbone(synthetic, backbone):
  """Shapes only (traced, not compiled) for every kind; the values for ace (a given table)."""
  seq = _inputs()
  for kind in initialisers.KINDS:
    config = _tiny(kind, backbone)
    init = initialisers.build(config, synthetic)
    model = run.build_model(config, 1000, init and init.module)
    shapes = jax.eval_shape(model.init, jax.random.key(0), seq)["params"]
    rows = backbones.table_rows(config, 1000)
    for name, value in (init.frozen if init else {}).items():
      assert value.shape == shapes["item_table"][name].shape and value.shape[0] == rows, kind
      assert not value[0].any() and not value[1001:].any()   # padding (and mask) rows are zero
    table = jax.eval_shape(lambda p, m=model: m.apply({"params": p}, method=type(m).table), shapes)
    scores = jax.eval_shape(lambda p, m=model: m.apply({"params": p}, seq,
                                                        method=type(m).scores), shapes)
    assert table.shape == (rows, 8) and scores.shape == (4, 1001), kind
  init = initialisers.build(_tiny("ace", backbone), synthetic)
  model = run.build_model(_tiny("ace", backbone), 1000)
  params = initialisers.init_params(model, 0, init)
  np.testing.assert_array_equal(initialisers.initial_table(model, params), init.item_table)


def _alpharec_reference(raw, params):
  """AlphaRec_Item_Embedding.weight, numpy float64: adapter(raw) = LeakyReLU(raw W0 + b0) W1 + b1."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  h = raw @ p["adapter_0"]["kernel"] + p["adapter_0"]["bias"]
  h = np.where(h > 0, h, 0.01 * h)
  return h @ p["adapter_1"]["kernel"] + p["adapter_1"]["bias"]


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_alpharec_is_the_official_adapter_over_frozen_raw_embeddings(synthetic, backbone):
  config = _tiny("alpharec", backbone)
  config.model.hidden = 16
  init = initialisers.build(config, synthetic)
  raw = init.frozen["frozen_raw"]
  rows = backbones.table_rows(config, 1000)
  assert raw.shape == (rows, 24) and type(init.module).__name__ == "AlphaRecTable"
  x = initialisers.llm_embeddings(config, synthetic)
  np.testing.assert_array_equal(raw[1:1001], x)             # raw: L2-normalised, not centred
  np.testing.assert_allclose(np.linalg.norm(raw[1:1001], axis=1), 1.0, rtol=1e-5)
  params = jax.jit(init.module.init)(jax.random.key(0))["params"]
  k0, b0 = np.asarray(params["adapter_0"]["kernel"]), np.asarray(params["adapter_0"]["bias"])
  assert k0.shape == (24, 12) and params["adapter_1"]["kernel"].shape == (12, 16)
  if backbone == "gru4rec":   # GRU4Rec's _init_weights: xavier_normal_, torch default bias
    assert np.abs(b0).max() > 0.5 / np.sqrt(24) and np.abs(b0).max() <= 1 / np.sqrt(24)
  else:                       # SASRec's / BERT4Rec's: N(0, 0.02), zero bias
    np.testing.assert_array_equal(b0, 0.0)
    assert abs(k0.std() - 0.02) < 0.005
  params = _perturbed(dict(params, frozen_raw=raw), 0.2)
  params["frozen_raw"] = raw
  table = jax.jit(lambda p: init.module.apply({"params": p}))(params)
  np.testing.assert_allclose(table, _alpharec_reference(raw, params), rtol=1e-5, atol=1e-6)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(init.module.apply({"params": p})))))(params)
  assert not np.any(grads["frozen_raw"]) and np.any(grads["adapter_0"]["kernel"])

  model = run.build_model(config, 1000, init.module)
  shapes = jax.eval_shape(model.init, jax.random.key(0), _inputs())["params"]
  assert shapes["item_table"]["frozen_raw"].shape == raw.shape
  if backbone == "bert4rec":  # the optimizer leaves the frozen input alone (backbone-independent)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    optimizer = run.build_optimizer(config, frozen_parts=True)
    updates, _ = jax.jit(optimizer.update)(jax.tree.map(jnp.ones_like, zeros),
                                           jax.jit(optimizer.init)(zeros), zeros)
    assert not np.any(updates["item_table"]["frozen_raw"])
    assert np.all(np.asarray(updates["item_table"]["adapter_1"]["kernel"]) != 0)


# ---------------------------------------------------------------------------------------------
# Configs and bad input.


def test_presets_and_bad_input(synthetic):
  gru, bert = gru4rec_configs.get_config("amazon_beauty"), bert4rec_configs.get_config("ml-1m")
  assert (gru.backbone, gru.model.hidden, gru.model.gru_hidden, gru.model.gru_layers,
          gru.model.dropout, gru.batch_size, gru.patience) == ("gru4rec", 128, 128, 1, 0.5, 256, 10)
  assert (bert.backbone, bert.model.hidden, bert.model.attention_dropout, bert.model.mask_ratio,
          bert.model.ft_ratio, bert.max_len) == ("bert4rec", 128, 0.3, 0.2, 0.5, 50)
  assert ace_configs.get_config("amazon_toys_alpharec_minilm").init.kind == "alpharec"
  assert isinstance(run.build_model(gru, 10), gru4rec.GRU4Rec)
  config = gru4rec_configs.get_config("synthetic")
  config.backbone = "rnn"
  with pytest.raises(ConfigError, match="config.backbone='rnn': use one of sasrec, gru4rec"):
    run.build_model(config, 10)
  config = bert4rec_configs.get_config("synthetic")
  config.max_len, config.model.mask_ratio = 4, 0.2
  with pytest.raises(ConfigError, match=r"config.model.mask_ratio=0.2 with max_len=4"):
    backbones.train_batches(config, synthetic)
  config.model.update(mask_ratio=0.5, cloze_windows="users")
  with pytest.raises(ConfigError, match="config.model.cloze_windows='users'"):
    backbones.train_batches(config, synthetic)
  config.model.update(cloze_windows="prefixes", ft_ratio=1.5)
  with pytest.raises(ConfigError, match="config.model.ft_ratio=1.5"):
    backbones.train_batches(config, synthetic)


# ---------------------------------------------------------------------------------------------
# 8 fake devices == 1 device.

_SHARDED_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np, optax
    from recsys_core import train
    from seqrec import backbones, bert4rec, cloze, data, gru4rec
    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    items = rng.integers(0, 50, size=300).astype(np.int32)
    examples = data.Examples(items=items, targets=np.arange(100, 300),
                             lengths=rng.integers(1, 9, size=200), max_len=8)
    windows = cloze.Windows(items, np.arange(100, 300), rng.integers(1, 9, size=200), 8)
    gru = gru4rec.GRU4Rec(num_items=50, max_len=8, hidden=16, gru_hidden=16, num_layers=2,
                          dropout=0.3)
    bert = bert4rec.BERT4Rec(num_items=50, max_len=8, hidden=16, inner=32, dropout=0.3,
                             attention_dropout=0.3)
    # Packed next-item rows are SASRec's (tests/test_train.py); packed cloze rows gather the
    # masked positions by global flat index, the unpacked ones too.
    cases = {"gru4rec": (gru, list(data.Batches(examples, 32, 0).epoch(0))[:2]),
             "bert4rec_packed": (bert, list(cloze.ClozeBatches(
                 windows, 32, 0, 51, 0.3, 0.5, pack_multiple=8).epoch(0))[:2])}
    out = {}
    optimizer = optax.adam(1e-2)
    for case, (model, batches) in cases.items():
      params, initial = {}, jax.device_get(backbones.init_params(model, 0))  # steps donate
      for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
        mesh = train.make_mesh(devices)
        state = train.replicate(train.create_state(initial, optimizer, 0), mesh)
        step = train.make_train_step(backbones.loss_fn(model), optimizer, mesh)
        losses = []
        for batch in batches:
          state, metrics = step(state, train.global_batch(batch, mesh))
          losses.append(float(metrics["loss"]))
        params[name] = (jax.device_get(state.params), losses)
      diff = max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))),
                                              params["one"][0], params["eight"][0])))
      out[case] = {"max_diff": diff, "one": params["one"][1], "eight": params["eight"][1]}
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow  # a fresh 8-device process; the shared step's sharding is in test_train.py
def test_sharded_steps_on_8_devices_equal_one_device():
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
  # optimisation level 0: compiling, not running, is the cost here (as in test_initialisers.py)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 "
             "--xla_backend_optimization_level=0", JAX_PLATFORMS="cpu", PYTHONPATH=path)
  result = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))
  out = json.loads(line[len("RESULT "):])
  for case, value in out.items():
    assert value["max_diff"] < 1e-5, (case, value)
    np.testing.assert_allclose(value["one"], value["eight"], rtol=1e-5, err_msg=case)
    assert len(value["one"]) == 2 and np.isfinite(value["one"]).all(), (case, value)


# ---------------------------------------------------------------------------------------------
# kill -9 + resume == uninterrupted, then --mode=eval (the protocol of tests/test_checkpoint.py).

# 17 batches of 2048 per epoch: a validation at step 17 and the stop at 26, checkpoints every 8.
_OVERRIDES = ["--config.progress=False", "--config.batch_size=2048", "--config.max_len=5",
              "--config.model.hidden=16", "--config.model.inner=32", "--config.model.gru_hidden=16",
              "--config.num_train_steps=26", "--config.checkpoint_every_steps=8"]
_VOLATILE = ("time/", "memory/")


def _stable(record):
  return {k: v for k, v in record.items() if not k.startswith(_VOLATILE)}


@pytest.mark.slow  # six launches, ~40 s of CPU: compiling dominates (the cache keeps it to one)
@pytest.mark.parametrize("backbone", ["gru4rec", "bert4rec"])
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, backbone):
  command = [sys.executable, "launch.py", f"--config=configs/{backbone}.py:synthetic", *_OVERRIDES]
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path.parent / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  result = subprocess.run(command + [f"--workdir={straight}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]

  with open(tmp_path / "killed.log", "w") as log:
    process = subprocess.Popen(command + [f"--workdir={killed}"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env=env)
    log_path = os.path.join(killed, "metrics.jsonl")
    deadline = time.time() + 300
    while not os.path.exists(log_path) and time.time() < deadline and process.poll() is None:
      time.sleep(0.02)  # right after the first validation (step 17), before the stop at 26
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  result = subprocess.run(command + [f"--workdir={killed}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from step" in result.stderr

  a, b = (json.load(open(os.path.join(d, "metrics.json"))) for d in (straight, killed))
  assert _stable(a) == _stable(b) and a["train/steps"] == 26
  lines = [[_stable(json.loads(line)) for line in open(os.path.join(d, "metrics.jsonl"))]
           for d in (straight, killed)]
  assert lines[0] == lines[1] and [r["step"] for r in lines[0]] == [17, 26]

  # --mode=eval on the best checkpoint (in process: the config as launch.py resolved it)
  config = ml_collections.ConfigDict(json.load(open(os.path.join(straight, "config.json"))))
  config.data_dir = os.path.join(ROOT, config.data_dir)
  again = run.run(config, straight, "eval")
  for key in ("test/ndcg@10", "test/recall@20", "valid/ndcg@20"):
    assert again[key] == a[key], key
