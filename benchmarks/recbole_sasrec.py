"""RecBole's own SASRec on the same data and settings as configs/sasrec.py (the reference to beat).

Runs in a SEPARATE environment (RecBole needs PyTorch; the project does not):

  python3.11 -m venv /tmp/recbole_env
  /tmp/recbole_env/bin/pip install torch recbole==1.2.1 "numpy<2" "pandas<3" "setuptools<70"  # CPU torch
  /tmp/recbole_env/bin/python -m benchmarks.recbole_sasrec --dataset=amazon_beauty --epochs=1

It converts `<data_dir>/<dataset>/user_sequence.txt` into a RecBole atomic file (timestamp = position in
the user's sequence, so RecBole keeps our chronological order), then trains RecBole's SASRec with the ACE
paper's settings (2 layers, 2 heads, hidden 64, inner 256, dropout .5/.3, max length 50, batch 256, Adam
1e-3, CE loss, leave-one-out, full ranking, early stopping on valid NDCG@10 with patience 10). RecBole's
log prints the seconds per training epoch ("epoch 0 training [time: ...]") and the test metrics.
"""

import argparse
import os
import tempfile


def write_atomic(data_dir: str, dataset: str, folder: str) -> None:
  """<folder>/<dataset>/<dataset>.inter with user_id, item_id, timestamp (= position)."""
  os.makedirs(os.path.join(folder, dataset), exist_ok=True)
  with open(os.path.join(data_dir, dataset, "user_sequence.txt")) as f, \
       open(os.path.join(folder, dataset, f"{dataset}.inter"), "w") as out:
    out.write("user_id:token\titem_id:token\ttimestamp:float\n")
    for line in f:
      user, *items = line.split()
      for position, item in enumerate(items):
        out.write(f"{user}\t{item}\t{position}\n")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--dataset", default="amazon_beauty")
  parser.add_argument("--data_dir", default="../shared/data")
  parser.add_argument("--epochs", type=int, default=200)
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  args = parser.parse_args()
  # RecBole 1.2.1 reloads its best checkpoint with torch.load, which torch >= 2.6 refuses by default.
  os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
  import torch  # pylint: disable=g-import-not-at-top
  from recbole.quick_start import run_recbole  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  folder = tempfile.mkdtemp(prefix="recbole_")
  write_atomic(args.data_dir, args.dataset, folder)
  os.chdir(folder)  # RecBole writes log/, log_tensorboard/ and saved/ into the working directory
  config = {
      "data_path": folder, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
      "TIME_FIELD": "timestamp", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
      "MAX_ITEM_LIST_LENGTH": 50, "n_layers": 2, "n_heads": 2, "hidden_size": 64,
      "inner_size": 256, "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.3,
      "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
      "loss_type": "CE", "train_neg_sample_args": None, "train_batch_size": 256,
      "learning_rate": 1e-3, "epochs": args.epochs, "stopping_step": 10, "eval_step": 1,
      "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                    "group_by": "user"},
      "metrics": ["Recall", "NDCG"], "topk": [10, 20], "valid_metric": "NDCG@10",
      "eval_batch_size": 4096, "device": "cpu", "use_gpu": False, "seed": 0,
      "show_progress": False,
  }
  print(run_recbole(model="SASRec", dataset=args.dataset, config_dict=config))


if __name__ == "__main__":
  main()
