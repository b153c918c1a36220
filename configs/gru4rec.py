"""GRU4Rec (RecBole's architecture, seqrec/gru4rec.py) under leave-one-out, full ranking.

  python launch.py --config=configs/gru4rec.py:<dataset> --workdir=DIR [--mode=train|eval]

dataset: synthetic | amazon_beauty | amazon_toys | amazon_sports | amazon_video | ml-1m.
configs/sasrec.py's config with config.backbone = "gru4rec". Real datasets: the ACE code's settings
(DCheol/ACE recbole/properties/model/GRU4Rec.yaml merged with its dataset yaml, as RecBole merges
them): embedding (item table) 128, GRU hidden 128, 1 layer, dropout .5 on the item embeddings, CE
over all items, max length 50, batch 256, early stopping on valid NDCG@10 with patience 10; Adam lr
5e-4 (the value the official run.sh passes; the official runs read no `lr` and train at
1e-4: configs/ace.py's `_last` presets). Initialisers: configs/ace.py with --config.backbone=gru4rec.
"""

import ml_collections

from configs import sasrec as sasrec_config

OFFICIAL = dict(learning_rate=5e-4, model=dict(hidden=128, gru_hidden=128, gru_layers=1,
                                               dropout=0.5))
SYNTHETIC = dict(model=dict(gru_hidden=64))  # with configs/sasrec.py's small synthetic model

DATASETS = tuple(sasrec_config.DATASETS)


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  config = sasrec_config.get_config(arg)  # refuses unknown presets
  config.backbone = "gru4rec"
  config.update(SYNTHETIC if arg == "synthetic" else OFFICIAL)
  return config
