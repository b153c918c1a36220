"""Linear autoencoders: LAE, EASE, RLAE, DLAE, EDLAE, RDLAE (Moon, Kim, Lee, SIGIR'23), and the GF-CF
baseline (Shen et al., CIKM'21) as the official RDLAE code runs it.

  python launch.py --config=configs/lae.py:<model>_<dataset> --workdir=DIR [--mode=search]

model: lae | ease | rlae | dlae | edlae | rdlae | gfcf.
dataset: synthetic | gowalla_strong | gowalla_weak | ml-100k_strong | ml-1m_strong.
Defaults are the paper's best hyperparameters on gowalla (strong generalization, Table 3) where known.
"""

import ml_collections

# The paper's best (lambda, p, xi) on gowalla, strong generalization.
GOWALLA_STRONG = {
    "lae": dict(lam=300.0), "ease": dict(lam=80.0), "rlae": dict(lam=80.0, xi=0.4),
    "dlae": dict(lam=100.0, p=0.5), "edlae": dict(lam=90.0, p=0.6), "rdlae": dict(lam=70.0, p=0.5, xi=0.4),
    "gfcf": dict(alpha=0.1),   # official strong/gowalla.sh: --model=GFCF --alpha=0.1
}
# Weak generalization (LightGCN split): the official weak/gowalla.sh runs EASE 80 and EDLAE (60, .8) and
# lists LAE 500, DLAE (60, .9), RLAE (100, .2), RDLAE (80, .8, .09) in comments.
GOWALLA_WEAK = {
    "lae": dict(lam=500.0), "ease": dict(lam=80.0), "rlae": dict(lam=100.0, xi=0.2),
    "dlae": dict(lam=60.0, p=0.9), "edlae": dict(lam=60.0, p=0.8), "rdlae": dict(lam=80.0, p=0.8, xi=0.09),
    "gfcf": dict(alpha=0.1),   # not in the official weak scripts: the strong setting
}

DATASETS = {
    "synthetic": dict(dataset="synthetic", protocol="strong", heldout_users=300, min_rating=0.0,
                      hyper=dict(lae=dict(lam=50.0), ease=dict(lam=20.0), rlae=dict(lam=20.0, xi=0.2),
                                 dlae=dict(lam=20.0, p=0.3), edlae=dict(lam=20.0, p=0.3),
                                 rdlae=dict(lam=20.0, p=0.3, xi=0.2), gfcf=dict(alpha=0.1))),
    "gowalla_strong": dict(dataset="gowalla_strong", protocol="presplit", hyper=GOWALLA_STRONG),
    "gowalla_weak": dict(dataset="gowalla_weak", protocol="presplit", recall_normalization="size",
                         hyper=GOWALLA_WEAK),
    # MovieLens: VAE-CF preprocessing (ratings >= 4 where ratings exist, users with >= 5 items).
    "ml-100k_strong": dict(dataset="ml-100k", protocol="strong", heldout_users=100, min_rating=4.0,
                           hyper={m: dict(lam=50.0, p=0.3, xi=0.3) for m in GOWALLA_STRONG}),
    "ml-1m_strong": dict(dataset="ml-1m", protocol="strong", heldout_users=600, min_rating=0.0,
                         hyper={m: dict(lam=300.0, p=0.3, xi=0.3) for m in GOWALLA_STRONG}),
}


def get_config(arg: str = "ease_synthetic") -> ml_collections.ConfigDict:
  model, _, dataset = arg.partition("_")
  if model not in GOWALLA_STRONG or dataset not in DATASETS:
    raise ValueError(f"unknown preset {arg!r}: use <model>_<dataset> with model in {sorted(GOWALLA_STRONG)} "
                     f"and dataset in {sorted(DATASETS)}")
  preset = dict(DATASETS[dataset])
  hyper = preset.pop("hyper")[model]

  config = ml_collections.ConfigDict()
  config.family = "lae"
  config.model = model
  config.lam = 80.0            # lambda, the L2 weight
  config.p = 0.5               # dropout probability (dlae, edlae, rdlae)
  config.xi = 0.4              # diagonal bound diag(B) <= xi (rlae, rdlae)
  config.alpha = 0.1           # gfcf: weight of the ideal low-pass term
  config.gfcf_vectors = 256    # gfcf: top singular vectors k of the normalised matrix (official 256)
  config.dtype = "float32"     # or float64 (enables jax x64)
  config.solve_method = "auto"     # auto | direct | woodbury (auto: woodbury when users < items)
  config.inverse_backend = ""      # '' = lapack on CPU, jax on accelerators; or 'lapack' / 'jax'
  # Where the direct route's Gram matrix X^T X is built: 'host' (sparse, one process), 'mesh'
  # (user blocks over every device of the job, one all-reduce) or 'auto' (mesh when the job has
  # several processes or an accelerator).
  config.gram = "auto"

  config.dataset = "synthetic"
  config.data_dir = "../shared/data"   # folder holding <dataset>/ (relative to the working directory)
  config.protocol = "strong"       # strong | weak | presplit (split read from the dataset's files)
  config.heldout_users = 300       # strong: users in each of valid and test
  config.fold_in_fraction = 0.8    # strong: share of a held-out user's items given to the model
  config.test_fraction = 0.2       # weak: share of each user's items to predict
  config.min_rating = 0.0          # keep interactions with rating >= this (0 keeps all)
  config.min_user_interactions = 5
  config.seed = 0

  config.ks = (10, 20, 50, 100)    # the official tables' cut-offs
  config.recall_normalization = "min"   # min: Recall@k / min(k, |test|) (strong); size: / |test| (weak)
  config.head_fraction = 0.2            # head = this share of items with the most training users
  # Unbiased uRecall/uPrecision/uNDCG: propensity p_j = max((c_j / max c) ** power, floor) from the
  # training counts c (official RDLAE code: power .5, floor .01).
  config.propensity_power = 0.5
  config.propensity_floor = 0.01
  config.eval_batch_size = 1000
  config.progress = True

  config.search = ml_collections.ConfigDict()   # --mode=search grid; empty tuple keeps the value above
  config.search.metric = "valid/ndcg@100"
  config.search.lam = (10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
  config.search.p = (0.1, 0.3, 0.5, 0.7)
  config.search.xi = (0.1, 0.2, 0.3, 0.4, 0.5)

  config.update(preset)
  config.update(hyper)
  return config
