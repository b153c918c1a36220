"""Principal-component view of the LAE family: the gain v_k^T B v_k along each principal direction.

  nice -n 19 python -m benchmarks.lae_spectrum --data_dir=../shared/data --dataset=ml-1m_strong \
      --out=benchmarks/results/lae_spectrum.md --plot=benchmarks/results/lae_spectrum.png

G = X^T X = V diagMat(s) V^T on the training matrix; for LAE, EASE, RLAE at several xi and DLAE (one
lambda for all, the dataset's EASE preset unless --lam) the gain of B along each v_k against the rank
k (`lae_jax/spectrum.py`). A direction is a head direction when most of its mass (||v_k||^2 restricted
to the head items, the official top-20% rule) lies on head items. Catalogues of up to
--dense_items items take the dense eigendecomposition of the items x items Gram matrix and show
every direction; larger ones (gowalla strong: 41k items, 30k users) that of the users x users
matrix X X^T and every --every-th direction (gowalla: ~30 min for the eigendecomposition on 2 cores,
and per model a dense solve and B V; about 15 GB of memory):

  nice -n 19 python -m benchmarks.lae_spectrum --data_dir=../shared/data --dataset=gowalla_strong \
      --every=10 --out=benchmarks/results/lae_spectrum_gowalla.md \
      --plot=benchmarks/results/lae_spectrum_gowalla.png
"""

import os

from absl import app
from absl import flags
import numpy as np

from benchmarks import reports
from configs import lae as lae_configs
from lae_jax import run as lae_run
from lae_jax import solve
from lae_jax import spectrum
from recsys_core import metrics as metrics_lib
from recsys_core.plots import plt, save

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_DATASET = flags.DEFINE_string("dataset", "ml-1m_strong", "configs/lae.py dataset of the presets")
_LAM = flags.DEFINE_float("lam", 0.0, "lambda for every model (0: the dataset's EASE preset)")
_P = flags.DEFINE_float("p", 0.0, "DLAE's dropout p (0: the dataset's DLAE preset)")
_XIS = flags.DEFINE_list("xis", ["0.1", "0.3", "0.5"], "RLAE bounds to show")
_DENSE_ITEMS = flags.DEFINE_integer("dense_items", 8000, "largest catalogue decomposed on the item "
                                    "side (all directions); larger ones use the user side")
_EVERY = flags.DEFINE_integer("every", 10, "user side: the first 100 directions, then every "
                               "this-many-th")
_OUT = flags.DEFINE_string("out", "", "write the markdown report here")
_PLOT = flags.DEFINE_string("plot", "", "write the PNG here")

BANDS = ((1, 10), (11, 100), (101, None))   # ranks (1-based, inclusive)


def models(lam, p, xis):
  """(label, model, fit kwargs) of every curve."""
  out = [("LAE", "lae", dict(lam=lam)), ("EASE", "ease", dict(lam=lam))]
  out += [(f"RLAE ξ={xi:g}", "rlae", dict(lam=lam, xi=xi)) for xi in xis]
  return out + [(f"DLAE p={p:g}", "dlae", dict(lam=lam, p=p))]


def main(_):
  load_before = os.getloadavg()
  config = lae_configs.get_config(f"ease_{_DATASET.value}")
  config.data_dir = _DATA_DIR.value
  lam = _LAM.value or config.lam
  p = _P.value or lae_configs.get_config(f"dlae_{_DATASET.value}").p
  split = lae_run.load_split(config)
  head = metrics_lib.head_item_mask(split.item_counts(), config.head_fraction)
  if split.train.shape[1] <= _DENSE_ITEMS.value:
    principal = spectrum.principal_directions(split.train)
  else:
    principal = spectrum.principal_directions_from_users(split.train, _EVERY.value)
  share = spectrum.head_share(principal.vectors, head)
  is_head = share > 0.5
  gains = {}
  for label, model, kwargs in models(lam, p, [float(x) for x in _XIS.value]):
    b, _ = solve.fit(split.train, model, dtype=np.float32, **kwargs)
    gains[label] = spectrum.principal_gains(np.asarray(b), principal.vectors)
    del b

  n = len(principal.values)
  ranks = principal.ranks + 1   # 1-based ranks of the computed directions
  shown = ("every direction" if len(ranks) == n else
           f"the first 100 directions and every {_EVERY.value}th after them ({len(ranks)} of the {n} "
           "with a non-zero eigenvalue), from the eigenvectors of X Xᵀ")
  lines = [f"# Principal directions: v_kᵀ B v_k on {_DATASET.value}", "",
           *reports.setup_block(load_before, os.getloadavg(), ("jax", "numpy", "scipy")),
           f"Command: `nice -n 19 python -m benchmarks.lae_spectrum --data_dir={_DATA_DIR.value} "
           f"--dataset={_DATASET.value}"
           + (f" --dense_items={_DENSE_ITEMS.value}" if _DENSE_ITEMS.value != 8000 else "")
           + (f" --every={_EVERY.value}" if len(ranks) < n else "")
           + (f" --out={_OUT.value}" if _OUT.value else "")
           + (f" --plot={_PLOT.value}" if _PLOT.value else "") + "`", "",
           f"G = XᵀX of the training matrix ({split.train.shape[0]} users x {split.train.shape[1]} "
           f"items), eigenvectors v_k by decreasing eigenvalue, {shown}; λ = {lam:g} for every "
           "model. Mean gain v_kᵀ B v_k over bands of ranks, and over head directions (> 50% of "
           f"||v_k||² on the head items: {int(is_head.sum())} of {len(ranks)}) and tail directions. "
           "LAE's gain is s_k / (s_k + λ).", "",
           "| model | " + " | ".join(f"ranks {a}-{b or n}" for a, b in BANDS)
           + " | head directions | tail directions |",
           "|---" * (len(BANDS) + 3) + "|"]
  for label, g in gains.items():
    cells = [f"{g[(ranks >= a) & (ranks <= (b or n))].mean():.3f}" for a, b in BANDS]
    cells += [f"{g[is_head].mean():.3f}" if is_head.any() else "-",
              f"{g[~is_head].mean():.3f}" if (~is_head).any() else "-"]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  print(text)

  if _PLOT.value:
    fig, (ax, ax_share) = plt.subplots(2, 1, figsize=(7.5, 6.4), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    for label, g in gains.items():
      ax.plot(ranks, g, lw=1, label=label)
    ax.set_xscale("log")
    ax.set_ylabel("v_kᵀ B v_k")
    ax.set_title(f"Gain along the principal directions of X ({_DATASET.value}, λ={lam:g})")
    ax.grid(alpha=.3)
    ax.legend(fontsize=7, ncol=2)
    ax_share.scatter(ranks, share, s=2, c=np.where(is_head, "tab:orange", "tab:green"))
    ax_share.set_ylabel("head share")
    ax_share.set_xlabel("rank k of the principal direction (orange: head direction)")
    ax_share.grid(alpha=.3)
    save(fig, _PLOT.value)
    if _OUT.value:
      text += f"\n![gains]({os.path.relpath(_PLOT.value, os.path.dirname(_OUT.value))})\n"
  if _OUT.value:
    reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
