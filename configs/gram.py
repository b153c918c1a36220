"""GRAM: a T5 with multi-granular late fusion generates the next item's lexical ID (gram_jax/run.py).

  python launch.py --config=configs/gram.py:<preset> --workdir=DIR [--mode=train|eval]

presets: synthetic (seconds to minutes; tests, README)
         amazon_beauty | amazon_toys | amazon_sports          the CPU preset (see CPU below)
         amazon_beauty_paper | amazon_toys_paper | amazon_sports_paper   the paper's scale
Ablations (any preset): --config.item_prompts=False (w/o fine item prompts), --config.num_neighbours=0
(w/o collaborative neighbours), --config.ids.shuffle=True (random IDs: ours permuted over the
items), --config.model.prompt_positions=False (w/o prompt-position embeddings),
--config.ids.source=authors (the authors' released IDs instead of ours). amazon_sports has no item text: its presets use the authors' IDs, and neighbours from a
SASRec run of ours (train configs/sasrec.py:amazon_sports into runs/sasrec_sports first).

Paper / official settings (command/train_gram_*.sh, src/arguments.py): t5-small, max_his 20, one
user prompt + up to 20 item prompts of <= 128 tokens, neighbours Beauty 10 / Toys 5 / Sports 10,
IDs Beauty c=128 l=7 / Toys c=32 l=5 / Sports c=32 l=7, AdamW lr 1e-3 (eps 1e-6, weight decay .01 on
every weight), linear warmup 5% then linear decay, clipping 1.0, batch 128 (32 x 2 accumulation x 2
GPUs), 30 epochs, validation every 5 epochs, beam 50 with length penalty 1.0. The model
trains from scratch unless model.hf_checkpoint points at a pretrained Hugging Face T5 v1.0
checkpoint (then use its tokenizer: --config.tokenizer.kind=sentencepiece
--config.tokenizer.path=DIR/spiece.model).

CPU preset (sized to train on a few CPU cores in hours): the tiny T5 from scratch, the user prompt +
the 5 most recent items' prompts of 64 tokens with 3 neighbours, batches bucketed by prompt count,
2 epochs, beam 20, validation on a 2,000-user sample; see CPU below.
"""

import ml_collections

from configs import embed as embed_config

# (clusters per level c, depth l, neighbours k in the fine prompts) of the paper.
PAPER = {"amazon_beauty": (128, 7, 10), "amazon_toys": (32, 5, 5), "amazon_sports": (32, 7, 10)}

# The paper's scale, for GPUs/TPUs.
PAPER_SCALE = dict(model=dict(size="small"), max_his=20, num_fine=20, prompt_len=128,
                   batch_size=128, epochs=30, eval_every_epochs=5, patience=6, num_beams=50,
                   length_penalty=1.0, prompt_buckets=(), valid_users=0)

# CPU preset: the tiny T5 (0.74M parameters with the 8k vocabulary) from scratch; the user prompt +
# the 5 most recent items' fine prompts of 64 tokens each, which hold the item's ID, 3 neighbour IDs
# and the start of its text (the user prompt: its most recent IDs); batches bucketed by the number
# of prompts they need (gram_jax/batching.py); beam 20 (also gives @20); validation each epoch on a
# fixed sample of 2,000 users. Why: a training step's cost grows with prompts x tokens (attention
# with tokens^2), and Beauty's histories are short, so most of the paper's 21 prompts per example
# would be padding. The learning rate 1e-2 and 2 epochs are this preset's choice for a tiny model
# trained from scratch. Costs and results: benchmarks/results/gram.md (CPU preset). Richer, slower:
# --config.num_fine=20 --config.prompt_buckets='(1,2,3,5,8,12)', --config.prompt_len=128
# --config.num_neighbours=10.
CPU = dict(model=dict(size="tiny"), max_his=20, num_fine=5, prompt_len=64, num_neighbours=3,
           batch_size=64, learning_rate=1e-2, epochs=2, eval_every_epochs=1, patience=2,
           num_beams=20,
           length_penalty=0.0, prompt_buckets=(1, 2, 3), valid_users=2000)

DATASETS = {
    # 2,000 users, 1,000 items in 20 text clusters (recsys_core/synthetic.py): bag-of-words embeddings,
    # 3-level IDs, no neighbours (no SASRec run needed), a very small T5 and short prompts, so a
    # run trains in a minute and must beat popularity by far.
    "synthetic": dict(
        ids=dict(embeddings="bow", num_clusters=10, depth=3, num_restarts=2),
        tokenizer=dict(vocab_size=600), num_neighbours=0, neighbours="",
        model=dict(size="tiny", d_model=32, d_kv=8, d_ff=64, num_layers=1,
                   num_decoder_layers=1, dropout_rate=0.0),
        max_his=8, num_fine=2, prompt_len=32, prompt_buckets=(1,), batch_size=64,
        learning_rate=1e-2, epochs=2, eval_every_epochs=1, patience=2, num_beams=10,
        length_penalty=0.0, ks=(5, 10), valid_users=500, eval_batch_size=100),
}
for _name, (_c, _l, _k) in PAPER.items():
  _own = dict(ids=dict(num_clusters=_c, depth=_l))
  if _name == "amazon_sports":  # no item text: the authors' IDs, our SASRec's neighbours
    _own = dict(ids=dict(source="authors", num_clusters=_c, depth=_l),
                neighbours="sasrec:runs/sasrec_sports")
  DATASETS[_name] = dict(_own, **CPU)
  DATASETS[_name + "_paper"] = dict(_own, **PAPER_SCALE, num_neighbours=_k)


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  if arg not in DATASETS:
    raise ValueError(f"unknown preset {arg!r}: use one of {sorted(DATASETS)}")
  dataset = arg[:-len("_paper")] if arg.endswith("_paper") else arg

  config = ml_collections.ConfigDict()
  config.family = "gram"
  config.dataset = dataset
  config.data_dir = "../shared/data"   # folder holding <dataset>/ (relative to the working directory)
  config.seed = 0                      # parameters, batch order, dropout, validation sample

  # Lexical item IDs. Built once per workdir (DIR/ids.txt) and reused by later launches.
  config.ids = ml_collections.ConfigDict()
  config.ids.source = "ours"           # ours: built from item embeddings | authors: the released file
  config.ids.embeddings = "minilm"     # ours: minilm | smollm2 | tiny_llama | bow | PATH.npy
  config.ids.num_clusters = 128        # c, clusters per level
  config.ids.depth = 7                 # l, levels
  config.ids.seed = 0                  # k-means
  config.ids.num_restarts = 10         # k-means++ restarts per node
  config.ids.bow_dims = 96             # embeddings="bow": size of the bag-of-words vectors
  config.ids.shuffle = False           # True: IDs permuted over the items (seeded by ids.seed); the
                                       # "random IDs" ablation (same words and trie, no semantics)

  # Tokenizer (gram_jax/tokenizer.py); every ID word is one token of it.
  config.tokenizer = ml_collections.ConfigDict()
  config.tokenizer.kind = "trained"    # trained: SentencePiece BPE on the item text, DIR/spiece.model
  config.tokenizer.path = ""           # sentencepiece: a .model (T5's spiece.model) | hf_json: tokenizer.json
  config.tokenizer.vocab_size = 8000   # trained: pieces (an upper bound)

  # Prompts (gram_jax/prompts.py, gram_jax/data.py).
  config.max_his = 20                  # history items in the user prompt, most recent first
  config.item_prompts = True           # False: the user prompt alone (the "w/o item prompts" ablation)
  config.num_fine = 20                 # item prompts: the num_fine most recent history items
  config.prompt_len = 128              # tokens per prompt (EOS included)
  config.neighbours = "authors"        # authors: similar_item_sasrec.txt | sasrec:RUN_DIR | "" (none)
  config.num_neighbours = 10           # k neighbours per item prompt (0: none)

  # T5 (gram_jax/t5.py): a size preset, fields > 0 override it; or a Hugging Face checkpoint.
  config.model = ml_collections.ConfigDict()
  config.model.size = "small"          # tiny | small (t5-small) | base (t5-base)
  config.model.hf_checkpoint = ""      # folder with config.json + model.safetensors (T5 v1.0)
  config.model.dropout_rate = 0.1
  config.model.prompt_positions = True # False: no prompt-position embeddings (an ablation)
  config.model.dtype = "float32"       # bfloat16: bf16 matrix products (accelerators); float32
                                       # parameters, norms, softmaxes and loss
  config.model.d_model = 0
  config.model.d_kv = 0
  config.model.d_ff = 0
  config.model.num_layers = 0
  config.model.num_decoder_layers = 0
  config.model.num_heads = 0

  # Training: the shared data-parallel step (recsys_core/train.py) and loop (recsys_core/loop.py).
  config.batch_size = 128              # global batch
  config.learning_rate = 1e-3          # AdamW peak
  config.weight_decay = 0.01
  config.adam_eps = 1e-6               # official
  config.warmup_fraction = 0.05        # linear warmup over this share of the steps, then linear decay
  config.clip_norm = 1.0               # global gradient norm
  config.prompt_buckets = ()           # fine-prompt counts that bound batch shapes (gram_jax/batching.py)
  config.group_prefixes = False        # True: a batch holds consecutive prefixes of a few users (they
                                       # share item prompts; effect on accuracy not yet measured)
  config.distinct_prompts = False      # True: each distinct item prompt of a batch encoded once
                                       # (gram_jax/t5.py): same loss; a prompt's copies share dropout
  config.epochs = 30
  config.num_train_steps = 0           # stop after this many steps (0: no limit); also ends the schedule
  config.num_devices = 0               # 0: all devices; n: the first n

  # Evaluation: trie-constrained beam search, Recall/NDCG over the beam's items (one target per user).
  config.num_beams = 50
  config.length_penalty = 0.0          # finished IDs ranked by log P / len**penalty (official 1.0)
  config.ks = (5, 10, 20)              # cut-offs; those above num_beams are dropped
  config.valid_users = 0               # validate on a fixed seeded sample of this many users (0: all)
  config.eval_batch_size = 64          # users per beam-search call
  config.eval_every_epochs = 1
  config.early_stop_metric = "valid/ndcg@10"
  config.patience = 5                  # validations without improvement before stopping
  config.early_stop_rule = "strict"    # strict: > the best | recbole: ties improve (see loop.py)
  config.checkpoint_every_steps = 0    # extra mid-epoch checkpoints (0: after each validation)
  config.progress = True

  config.update(DATASETS[arg])
  if config.ids.source == "ours" and config.ids.embeddings in embed_config.EXTRACTORS:
    config.ids.embed = embed_config.get_config(f"{dataset}_{config.ids.embeddings}")
    config.ids.embed.progress = False
  return config
