"""Linear autoencoders: LAE, EASE, RLAE, DLAE, EDLAE, RDLAE (Moon, Kim, Lee, SIGIR'23), and the GF-CF
baseline (Shen et al., CIKM'21) as the official RDLAE code runs it.

  python launch.py --config=configs/lae.py:<model>_<dataset> --workdir=DIR [--mode=search]

model: lae | ease | rlae | dlae | edlae | rdlae | gfcf.
dataset: synthetic | gowalla_strong | gowalla_weak | ml-100k_strong | ml-1m_strong, and the paper's other
sets in the official release's files (not shipped here; see DATASETS below): ml-20m_strong |
netflix_strong | msd_strong | yelp2018_strong | amazon-book_strong | yelp2018_weak | amazon-book_weak.
The paper's datasets carry the official run scripts' hyperparameters (strong|weak/<dataset>.sh of
jaewan7599/RDLAE_SIGIR2023; their EASE --diag_const=False is our LAE, EDLAE --diag_const=False our DLAE).
`--mode=search` grids follow the official ranges: lambda on the scripts' 1-2-...-9 x 10^k ladder up to
the largest lambda the dataset's script uses, p and xi in .1, .2, ..., .9.
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

# The paper's other datasets, as the official scripts run them.
ML20M_STRONG = {
    "lae": dict(lam=10000.0), "ease": dict(lam=800.0), "rlae": dict(lam=1000.0, xi=0.6),
    "dlae": dict(lam=1000.0, p=0.3), "edlae": dict(lam=400.0, p=0.3),
    "rdlae": dict(lam=1000.0, p=0.2, xi=0.6), "gfcf": dict(alpha=1.0)}
NETFLIX_STRONG = {
    "lae": dict(lam=40000.0), "ease": dict(lam=1000.0), "rlae": dict(lam=2000.0, xi=0.5),
    "dlae": dict(lam=900.0, p=0.4), "edlae": dict(lam=600.0, p=0.3),
    "rdlae": dict(lam=700.0, p=0.3, xi=0.4), "gfcf": dict(alpha=1.0)}
MSD_STRONG = {
    "lae": dict(lam=4000.0), "ease": dict(lam=100.0), "rlae": dict(lam=100.0, xi=0.5),
    "dlae": dict(lam=30.0, p=0.4), "edlae": dict(lam=70.0, p=0.3),
    "rdlae": dict(lam=80.0, p=0.2, xi=0.4), "gfcf": dict(alpha=0.0)}
YELP2018_STRONG = {
    "lae": dict(lam=600.0), "ease": dict(lam=300.0), "rlae": dict(lam=400.0, xi=0.4),
    "dlae": dict(lam=300.0, p=0.6), "edlae": dict(lam=200.0, p=0.7),
    "rdlae": dict(lam=200.0, p=0.6, xi=0.3), "gfcf": dict(alpha=0.2)}
AMAZON_BOOK_STRONG = {
    "lae": dict(lam=100.0), "ease": dict(lam=80.0), "rlae": dict(lam=70.0, xi=0.5),
    "dlae": dict(lam=70.0, p=0.4), "edlae": dict(lam=60.0, p=0.6),
    "rdlae": dict(lam=50.0, p=0.4, xi=0.4), "gfcf": dict(alpha=0.0)}
YELP2018_WEAK = {
    "lae": dict(lam=500.0), "ease": dict(lam=300.0), "rlae": dict(lam=300.0, xi=0.4),
    "dlae": dict(lam=200.0, p=0.7), "edlae": dict(lam=200.0, p=0.6),
    "rdlae": dict(lam=200.0, p=0.7, xi=0.2),
    "gfcf": dict(alpha=0.2)}   # not in the official weak scripts: the strong setting
AMAZON_BOOK_WEAK = {
    "lae": dict(lam=90.0), "ease": dict(lam=70.0), "rlae": dict(lam=60.0, xi=0.6),
    "dlae": dict(lam=60.0, p=0.2), "edlae": dict(lam=50.0, p=0.2),
    "rdlae": dict(lam=60.0, p=0.1, xi=0.6),
    "gfcf": dict(alpha=0.0)}   # not in the official weak scripts: the strong setting

# Every lambda of the official run scripts (30, 70, 400, 4000, 40000, ...) lies on this ladder.
LAMBDA_LADDER = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0,
                 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0,
                 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 9000.0,
                 10000.0, 20000.0, 30000.0, 40000.0)
TENTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)   # official p and xi range (README)


def _lambdas(top: float) -> tuple:
  """The ladder up to `top`, the largest lambda of the dataset's official script."""
  return tuple(lam for lam in LAMBDA_LADDER if lam <= top)


# Strong-generalization sets of the official release (one folder each, the gowalla_strong files:
# train.txt, valid_in.txt, valid.txt, test_in.txt, test.txt, optionally unique_sid.txt). Solve path
# and memory, float32, from the paper's dataset sizes (a dense n x n copy is 4 n^2 bytes; the peak is
# about two copies, as gowalla's measured 13 GB for 6.7 GB copies): ML-20M (20,108 items), Netflix
# (17,769) and MSD (41,140) have more training users than items: direct, 1.6 / 1.3 / 6.8 GB per copy;
# Yelp2018 (38,048 items) has fewer: Woodbury as gowalla, 5.8 GB per copy. Amazon-book (91,599
# items): 33.6 GB per copy on either route (Woodbury's C included), about 67 GB peak: refused
# before allocating on a 24 GiB machine (`linalg.check_dense_fits`).
# Weak: the training users are ranked from the Woodbury factors (woodbury-rows, never n x n):
# [m, m] + 2 x [m, n] float32, about 50 GB for Amazon-book's 52,643 users, likewise refused.
PAPER_DATASETS = {
    "ml-20m_strong": (ML20M_STRONG, 10000.0), "netflix_strong": (NETFLIX_STRONG, 40000.0),
    "msd_strong": (MSD_STRONG, 4000.0), "yelp2018_strong": (YELP2018_STRONG, 600.0),
    "amazon-book_strong": (AMAZON_BOOK_STRONG, 100.0), "yelp2018_weak": (YELP2018_WEAK, 500.0),
    "amazon-book_weak": (AMAZON_BOOK_WEAK, 90.0),
}

DATASETS = {
    "synthetic": dict(dataset="synthetic", protocol="strong", heldout_users=300, min_rating=0.0,
                      hyper=dict(lae=dict(lam=50.0), ease=dict(lam=20.0), rlae=dict(lam=20.0, xi=0.2),
                                 dlae=dict(lam=20.0, p=0.3), edlae=dict(lam=20.0, p=0.3),
                                 rdlae=dict(lam=20.0, p=0.3, xi=0.2), gfcf=dict(alpha=0.1))),
    "gowalla_strong": dict(dataset="gowalla_strong", protocol="presplit", hyper=GOWALLA_STRONG,
                           search_lam=_lambdas(300.0)),
    "gowalla_weak": dict(dataset="gowalla_weak", protocol="presplit", recall_normalization="size",
                         hyper=GOWALLA_WEAK, search_lam=_lambdas(500.0)),
    # MovieLens: VAE-CF preprocessing (ratings >= 4 where ratings exist, users with >= 5 items).
    # Not in the paper: lambda up to ML-20M's script maximum.
    "ml-100k_strong": dict(dataset="ml-100k", protocol="strong", heldout_users=100, min_rating=4.0,
                           hyper={m: dict(lam=50.0, p=0.3, xi=0.3) for m in GOWALLA_STRONG},
                           search_lam=_lambdas(10000.0)),
    "ml-1m_strong": dict(dataset="ml-1m", protocol="strong", heldout_users=600, min_rating=0.0,
                         hyper={m: dict(lam=300.0, p=0.3, xi=0.3) for m in GOWALLA_STRONG},
                         search_lam=_lambdas(10000.0)),
    **{name: dict(dataset=name, protocol="presplit", hyper=hyper, search_lam=_lambdas(top),
                  **({"recall_normalization": "size"} if name.endswith("_weak") else {}))
       for name, (hyper, top) in PAPER_DATASETS.items()},
}


def get_config(arg: str = "ease_synthetic") -> ml_collections.ConfigDict:
  model, _, dataset = arg.partition("_")
  if model not in GOWALLA_STRONG or dataset not in DATASETS:
    raise ValueError(f"unknown preset {arg!r}: use <model>_<dataset> with model in {sorted(GOWALLA_STRONG)} "
                     f"and dataset in {sorted(DATASETS)}")
  preset = dict(DATASETS[dataset])
  hyper = preset.pop("hyper")[model]
  search_lam = preset.pop("search_lam", _lambdas(1000.0))

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
  config.search.lam = search_lam   # the official ladder up to the dataset's script maximum
  config.search.p = TENTHS
  config.search.xi = TENTHS
  # LAE / EASE sweep every lambda from one eigendecomposition of G up to this many items (it holds
  # ~3 dense n x n arrays and costs ~10 inverses); above, and for every other model, one inverse
  # per (lambda, p) scores the whole xi grid.
  config.search.eigen_max_items = 20000

  config.update(preset)
  config.update(hyper)
  return config
