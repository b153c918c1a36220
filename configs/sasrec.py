"""SASRec (RecBole's architecture) under leave-one-out, full ranking.

  python launch.py --config=configs/sasrec.py:<dataset> --workdir=DIR [--mode=train|eval]

dataset: synthetic | amazon_beauty | amazon_toys | amazon_sports | amazon_video | ml-1m.
Defaults are the ACE paper's official SASRec settings (2 layers, 2 heads, hidden 64, inner 256,
dropout .5, attention dropout .3, max length 50, batch 256, Adam lr 1e-3, early stopping on
validation NDCG@10 with patience 10, up to 200 epochs). Quick runs: --config.epochs=2 or
--config.num_train_steps=100. Faster epochs, same batches and loss: --config.pack_multiple=8 packs
several short sequences per row (benchmarks/results/seqrec_speed.md; configs/ace.py's default).
"""

import ml_collections

DATASETS = {
    # The embedded synthetic data (2,000 users, 1,000 items, ~20 items per user): a small model
    # that trains in seconds per epoch on a CPU and must beat popularity by far after one epoch.
    "synthetic": dict(epochs=5, patience=2, max_len=20, learning_rate=3e-3,
                      model=dict(hidden=32, inner=64, num_layers=1, dropout=0.2,
                                 attention_dropout=0.2)),
    "amazon_beauty": {},
    "amazon_toys": {},
    "amazon_sports": {},
    "amazon_video": {},
    "ml-1m": {},
}


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  if arg not in DATASETS:
    raise ValueError(f"unknown preset {arg!r}: use one of {sorted(DATASETS)}")

  config = ml_collections.ConfigDict()
  config.family = "sasrec"
  config.dataset = arg
  config.data_dir = "../shared/data"   # folder holding <dataset>/ (relative to the working directory)
  config.seed = 0                      # parameters, batch order and dropout all derive from it
  # sasrec | gru4rec | bert4rec (seqrec/backbones.py; presets: configs/gru4rec.py, bert4rec.py)
  config.backbone = "sasrec"

  config.model = ml_collections.ConfigDict()
  config.model.hidden = 64             # hidden size = item embedding size
  config.model.inner = 256             # feed-forward inner size
  config.model.num_layers = 2
  config.model.num_heads = 2
  config.model.dropout = 0.5           # RecBole hidden_dropout_prob
  config.model.attention_dropout = 0.3     # RecBole attn_dropout_prob
  config.model.layer_norm_eps = 1e-12
  config.model.init_std = 0.02         # RecBole initializer_range
  config.model.score_temperature = 0.0     # 0: dot-product scores; t > 0: cosine / t (DWSRec: .07)
  # GRU4Rec (the item table is model.hidden wide, RecBole embedding_size; dropout: model.dropout)
  config.model.gru_hidden = 128        # GRU state size (RecBole hidden_size)
  config.model.gru_layers = 1          # GRU layers (RecBole num_layers)
  # BERT4Rec (RecBole / the ACE code's BERT4Rec.yaml)
  config.model.mask_ratio = 0.2        # probability that an item is replaced by [MASK]
  config.model.ft_ratio = 0.5          # share of batches that mask only each window's last item
  config.model.cloze_windows = "prefixes"  # prefixes: RecBole's augmented inputs | sequences: 1/user
  config.max_len = 50                  # RecBole MAX_ITEM_LIST_LENGTH
  config.train_prefixes = "all"        # all: every training prefix (RecBole's augmentation) | last:
                                       # each user's last one (the official ACE runs, --aug=False)
  config.item_init = ""                # optional .npy [num_items, hidden] initial item table (ACE)
  config.freeze_item_embedding = False     # True: the item table gets zero updates

  # Item-table initialiser from LLM item embeddings (seqrec/initialisers.py; configs/ace.py).
  config.init = ml_collections.ConfigDict()
  # id | raw | llm2x | whitenrec | whitenrec_plus | llmemb | alphafuse | alpharec | ace
  config.init.kind = "id"
  config.init.embeddings = ""          # [num_items, d]: .npy path | bow | minilm | smollm2 (ace.py)
  config.init.normalize = True         # L2-normalise the rows first (ACE: normalised, not centred)
  config.init.scale = 0.1              # raw/llm2x/ace tables rescaled to this global std (0: as is)
  config.init.lam = 50.0               # ACE lambda
  config.init.raw_method = "svd"       # raw: svd = top singular directions E V_k | first = first k
  config.init.whiten_groups = 4        # WhitenRec+: column groups of the relaxed (group) whitening
  config.init.whiten_eps = 1e-6        # whitening: variances floored at eps * the largest
  config.init.mlp_dropout = 0.2        # WhitenRec(+) MLP dropout
  config.init.pca_dim = 1536           # LLMEmb: frozen PCA size (capped at min(d, num_items - 1))
  config.init.null_dim = 0             # AlphaFuse: ID columns (0: hidden // 2, official 64 of 128)
  config.init.cover = False            # AlphaFuse: ID columns replace (True) / add to (False) them
  config.init.definition = "paper"     # paper | ace_code: the ACE authors' baseline files
                                       # (whitenrec, llmemb, llm2x; seqrec/initialisers.py)
  config.init.id_init = "normal"       # AlphaFuse: ID embeddings ~ N(0, id_init_std) | "uniform": U[0, 1)
  config.init.id_init_std = 1.0        # (AlphaFuse's own code: N(0, 1))
  config.init.bow_dims = 96            # embeddings="bow": size of the bag-of-words stand-in
  config.init.bow_seed = 0

  config.batch_size = 256              # global batch (split over devices and processes)
  # > 0: each batch's sequences packed several to a row, into a multiple of this many rows; the
  # same batch, loss and gradient in ~1/5 of the positions on Amazon data (seqrec/data.py); 0: one
  # sequence per row. A multiple of the number of processes (and of devices, for even shards).
  config.pack_multiple = 0
  config.learning_rate = 1e-3          # Adam
  config.weight_decay = 0.0            # L2 added to the gradient (torch Adam weight_decay)
  config.epochs = 200
  config.num_train_steps = 0           # stop after this many steps (0: no limit)
  config.num_devices = 0               # 0: all devices; n: the first n

  config.eval_every_epochs = 1
  config.early_stop_metric = "valid/ndcg@10"
  config.patience = 10                 # validations without improvement before stopping
  config.early_stop_rule = "strict"    # strict: > the best | recbole: ties improve (see loop.py)
  config.checkpoint_every_steps = 0    # extra mid-epoch checkpoints (0: after each validation)
  config.ks = (10, 20)
  config.recall_normalization = "size"     # one target per user: Recall@k = hit@k
  config.mask_history = False          # RecBole: only padding is excluded; True: also seen items
  config.eval_batch_size = 1024
  config.progress = True

  config.update(DATASETS[arg])
  return config
