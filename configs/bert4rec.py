"""BERT4Rec (RecBole's architecture and cloze training, seqrec/bert4rec.py, seqrec/cloze.py) under
leave-one-out, full ranking.

  python launch.py --config=configs/bert4rec.py:<dataset> --workdir=DIR [--mode=train|eval]

dataset: synthetic | amazon_beauty | amazon_toys | amazon_sports | amazon_video | ml-1m.
configs/sasrec.py's config with config.backbone = "bert4rec". Real datasets: the ACE code's settings
(DCheol/ACE recbole/properties/model/BERT4Rec.yaml merged with its dataset yaml, which wins where
both set a value): 2 layers, 2 heads, hidden 128, inner 256, dropout .5, attention dropout .3,
mask_ratio .2, ft_ratio .5, CE, max length 50, batch 256, early stopping on valid NDCG@10 with
patience 10; Adam lr 5e-4 (the value the official run.sh passes; the official runs read no `lr`
and train at 1e-4: configs/ace.py's `_last` presets). Initialisers: configs/ace.py,
--config.backbone=bert4rec.
"""

import ml_collections

from configs import sasrec as sasrec_config

OFFICIAL = dict(learning_rate=5e-4, model=dict(hidden=128, inner=256, num_layers=2, num_heads=2,
                                               dropout=0.5, attention_dropout=0.3,
                                               mask_ratio=0.2, ft_ratio=0.5))

DATASETS = tuple(sasrec_config.DATASETS)


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  config = sasrec_config.get_config(arg)  # refuses unknown presets
  config.backbone = "bert4rec"
  if arg != "synthetic":  # synthetic: configs/sasrec.py's small model (max_len 20: 4 masks)
    config.update(OFFICIAL)
  return config
