"""ACE and its paper's baselines: SASRec with an item table from LLM item embeddings.

  python launch.py --config=configs/ace.py:<dataset>_<init>_<extractor>[_last] --workdir=DIR

dataset:   synthetic | amazon_beauty | amazon_toys | ml-1m
init:      id | raw | llm2x | whitenrec | whitenrec_plus | llmemb | alphafuse | alpharec | ace
           (seqrec/initialisers.py; `<dataset>_id` needs no extractor)
extractor: minilm | smollm2 (| tiny_bert | tiny_llama: random weights) through the embedding cache
           of recsys_core/embed (configs/embed.py's settings in config.init.embed; a cache miss embeds the
           items first) | bow (bag-of-words stand-in built from the item text; tests and the
           synthetic data) | a path to a precomputed .npy
           [num_items, d] (row i = item i of the dataset's reader), e.g.
           amazon_beauty_ace_/data/beauty_e5.npy

The SASRec runner (family "sasrec", seqrec/run.py) trains every preset, with the ACE paper's
model for every initialiser: 2 layers, 2 heads, hidden 128, inner 256, dropout .5 / attention .3,
max length 50, batch 256; ACE lambda 50, tables at global std .1. Two training protocols:
  (default) every training prefix of every user (RecBole's augmentation), Adam lr 5e-4 (the value
        the official run.sh passes), early stopping on valid NDCG@10 after 10 validations without
        a strictly better one, up to 200 epochs.
  _last  the official runs' protocol (DCheol/ACE at f83342a): run.sh passes --aug=False, so each
        user contributes only its last training prefix (config.train_prefixes="last"); its --lr
        is read by no code, so Adam runs at the dataset yamls' learning_rate 1e-4; up to 400
        epochs; RecBole's early stopping (ties improve; stop after stopping_step + 1 = 11
        non-improving validations) on valid NDCG@10 (ml-1m: NDCG@20).
Batches pack several sequences per row (same batches and loss, faster; --config.pack_multiple=0
turns it off). The synthetic presets keep configs/sasrec.py's small synthetic model. Sweep lambda
with --config.init.lam=...; the official item text ("The beauty item has the following
attributes: ...") with --config.init.embed.text_template=ace_official.
Other backbones: --config.backbone=gru4rec | bert4rec (the ACE code's GRU4Rec / BERT4Rec settings
are configs/sasrec.py's fields model.gru_hidden, gru_layers, mask_ratio, ft_ratio).
"""

import ml_collections

from configs import embed as embed_config
from configs import sasrec as sasrec_config

DATASETS = ("synthetic", "amazon_beauty", "amazon_toys", "ml-1m")
INITS = ("id", "raw", "llm2x", "whitenrec", "whitenrec_plus", "llmemb", "alphafuse", "alpharec",
         "ace")
# The ACE paper's SASRec settings (its ACE runs use hidden 128); the rest as in configs/sasrec.py.
OFFICIAL = dict(learning_rate=5e-4, model=dict(hidden=128))
# The official runs' protocol (the `_last` presets): their dataset yamls and run.sh's --aug=False.
OFFICIAL_PROTOCOL = dict(train_prefixes="last", learning_rate=1e-4, epochs=400, patience=10,
                         early_stop_rule="recbole")
OFFICIAL_VALID_METRIC = {"ml-1m": "valid/ndcg@20"}  # ml-1m.yaml validates on NDCG@20
TEXT_FIELDS = {"ml-1m": ("title", "genres")}  # the ACE paper's ML-1M text (others: the defaults)
# Amazon inputs are short (mean ~8 of 50): a batch of 256 packs into ~46 rows of 50 positions
# (seqrec/data.py), the unpacked loss and gradient at a fraction of the cost
# (benchmarks/results/seqrec_speed.md); ML-1M's inputs are mostly full (~224 rows). Rows come in multiples of 8 (up to 8 devices shard evenly).
PACK_MULTIPLE = 8


def parse(arg: str) -> tuple:
  """"amazon_beauty_whitenrec_plus_minilm" -> ("amazon_beauty", "whitenrec_plus", "minilm", False);
  a trailing "_last" (the official runs' protocol) sets the last element."""
  official = arg.endswith("_last")
  return (*_parse(arg[:-len("_last")] if official else arg), official)


def _parse(arg: str) -> tuple:
  for dataset in DATASETS:
    if arg.startswith(dataset + "_"):
      rest = arg[len(dataset) + 1:]
      for init in sorted(INITS, key=len, reverse=True):
        if rest == init or rest.startswith(init + "_"):
          extractor = rest[len(init) + 1:]
          if extractor or init == "id":
            return dataset, init, extractor
  raise ValueError(f"unknown preset {arg!r}: use <dataset>_<init>_<extractor>[_last] with dataset "
                   f"in {DATASETS}, init in {INITS}, extractor minilm | smollm2 | bow | PATH.npy")


def get_config(arg: str = "synthetic_ace_bow") -> ml_collections.ConfigDict:
  dataset, init, extractor, official_protocol = parse(arg)
  config = sasrec_config.get_config(dataset)
  if dataset != "synthetic":
    config.update(OFFICIAL)
  if official_protocol:
    config.update(OFFICIAL_PROTOCOL)
    config.early_stop_metric = OFFICIAL_VALID_METRIC.get(dataset, config.early_stop_metric)
  config.pack_multiple = PACK_MULTIPLE
  config.init.kind = init
  config.init.embeddings = extractor
  config.init.lam = 50.0      # official
  config.init.scale = 0.1     # official
  config.init.id_init = "normal"   # AlphaFuse: IDs ~ N(0, 1) (Alphafuse_SASRec.yaml init_type)
  if extractor in embed_config.EXTRACTORS:  # the embedding cache's settings for this extractor
    config.init.embed = embed_config.get_config(f"{dataset}_{extractor}")
    config.init.embed.progress = False
    config.init.embed.text_fields = TEXT_FIELDS.get(dataset, ())
  return config
