"""Numerical parity of seqrec.sasrec.SASRec with RecBole's own modules (same weights, same inputs).

Two steps, two environments (the project has no PyTorch; RecBole's environment has no JAX):

  python -m benchmarks.recbole_parity --export=/tmp/sasrec_parity.npz            # project venv
  /tmp/recbole_env/bin/python -m benchmarks.recbole_parity --check=/tmp/sasrec_parity.npz

Export: a SASRec (hidden 64, inner 256, 2 layers, 2 heads, 500 items, max length 50) with randomly
perturbed parameters (so biases and LayerNorm parameters matter), 64 right-padded sequences of
random lengths, and our eval-mode scores [64, 501]. Check: RecBole's TransformerEncoder (recbole.model.
layers), its SequentialRecommender.get_attention_mask and gather_indexes, and SASRec.forward's embedding
lines, loaded with the same weights; prints the largest score difference.
"""

import argparse

import numpy as np

HIDDEN, INNER, LAYERS, HEADS, ITEMS, MAX_LEN, BATCH = 64, 256, 2, 2, 500, 50, 64


def export(path):
  import jax  # pylint: disable=g-import-not-at-top
  from seqrec import sasrec  # pylint: disable=g-import-not-at-top
  model = sasrec.SASRec(num_items=ITEMS, max_len=MAX_LEN, hidden=HIDDEN, inner=INNER,
                        num_layers=LAYERS, num_heads=HEADS)
  params = sasrec.init_params(model, 0)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys)])
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, MAX_LEN + 1, BATCH)
  seq = np.where(np.arange(MAX_LEN) < lengths[:, None],
                 rng.integers(1, ITEMS + 1, (BATCH, MAX_LEN)), 0).astype(np.int32)
  scores = model.apply({"params": params}, seq, method=sasrec.SASRec.scores)
  flat = {"/".join(str(k.key) for k in p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  np.savez(path, seq=seq, lengths=lengths, scores=np.asarray(scores), **flat)
  print(f"wrote {path}")


def check(path):
  import torch  # pylint: disable=g-import-not-at-top
  from recbole.model.abstract_recommender import SequentialRecommender  # pylint: disable=g-import-not-at-top
  from recbole.model.layers import TransformerEncoder  # pylint: disable=g-import-not-at-top
  f = np.load(path)
  t = lambda name, transpose=False: torch.tensor(f[name].T if transpose else f[name],
                                                 dtype=torch.float64)
  encoder = TransformerEncoder(n_layers=LAYERS, n_heads=HEADS, hidden_size=HIDDEN, inner_size=INNER,
                               hidden_dropout_prob=0.5, attn_dropout_prob=0.3, hidden_act="gelu",
                               layer_norm_eps=1e-12).double().eval()
  state = {}
  for i in range(LAYERS):
    for name in ("query", "key", "value", "dense"):
      state[f"layer.{i}.multi_head_attention.{name}.weight"] = t(f"attention_{i}/{name}/kernel", True)
      state[f"layer.{i}.multi_head_attention.{name}.bias"] = t(f"attention_{i}/{name}/bias")
    state[f"layer.{i}.multi_head_attention.LayerNorm.weight"] = t(f"attention_{i}/layer_norm/scale")
    state[f"layer.{i}.multi_head_attention.LayerNorm.bias"] = t(f"attention_{i}/layer_norm/bias")
    for name in ("dense_1", "dense_2"):
      state[f"layer.{i}.feed_forward.{name}.weight"] = t(f"feed_forward_{i}/{name}/kernel", True)
      state[f"layer.{i}.feed_forward.{name}.bias"] = t(f"feed_forward_{i}/{name}/bias")
    state[f"layer.{i}.feed_forward.LayerNorm.weight"] = t(f"feed_forward_{i}/layer_norm/scale")
    state[f"layer.{i}.feed_forward.LayerNorm.bias"] = t(f"feed_forward_{i}/layer_norm/bias")
  encoder.load_state_dict(state)
  layer_norm = torch.nn.LayerNorm(HIDDEN, eps=1e-12).double()
  layer_norm.load_state_dict({"weight": t("layer_norm/scale"), "bias": t("layer_norm/bias")})
  items, positions = t("item_embedding/embedding"), t("position_embedding/embedding")
  seq = torch.tensor(f["seq"], dtype=torch.long)
  with torch.no_grad():  # SASRec.forward + full_sort_predict, eval mode (dropout off)
    h = layer_norm(items[seq] + positions[torch.arange(MAX_LEN)][None])
    mask = SequentialRecommender.get_attention_mask(None, seq)
    h = encoder(h, mask, output_all_encoded_layers=True)[-1]
    out = SequentialRecommender.gather_indexes(None, h, torch.tensor(f["lengths"]) - 1)
    scores = (out @ items.T).numpy()
  diff = np.abs(scores - f["scores"]).max()
  print(f"max |ours (float32) - RecBole (float64)| = {diff:.2e} over scores of scale "
        f"{np.abs(scores).max():.2f}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--export")
  parser.add_argument("--check")
  args = parser.parse_args()
  if args.export:
    export(args.export)
  if args.check:
    check(args.check)


if __name__ == "__main__":
  main()
