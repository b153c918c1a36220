"""Item-text embeddings (the extractors behind ACE and GRAM), cached for later runs.

  python launch.py --config=configs/embed.py:<dataset>_<extractor> --workdir=DIR

dataset: synthetic | amazon_beauty | amazon_toys | ml-1m | ml-100k | lastfm (the ones with item text)
extractor: minilm (all-MiniLM-L6-v2, 384-d) | smollm2 (SmolLM2-135M-Instruct hidden states, 576-d)
  | tiny_bert | tiny_llama (random init, no weight packages: for CI and quick checks)
The matrix [num_items, dim] float32 (row = dense item id) lands in config.cache_dir; a later run
with the same item texts, model and pooling reuses it. Other code gets it through
`recsys_core.embed.run.item_embeddings(config)`.
"""

import ml_collections

DATASETS = ("synthetic", "amazon_beauty", "amazon_toys", "ml-1m", "ml-100k", "lastfm")
EXTRACTORS = {
    "minilm": {},
    # 135M parameters on every token: smaller batches keep a CPU's activations in cache.
    "smollm2": dict(batch_size=16),
    "tiny_bert": {},
    "tiny_llama": {},
}
PRESETS = {f"{d}_{e}": dict(dataset=d, extractor=e, **o)
           for d in DATASETS for e, o in EXTRACTORS.items()}


def get_config(arg: str = "synthetic_tiny_llama") -> ml_collections.ConfigDict:
  if arg not in PRESETS:
    raise ValueError(f"unknown preset {arg!r}: use <dataset>_<extractor> with dataset in "
                     f"{DATASETS} and extractor in {tuple(EXTRACTORS)}")

  config = ml_collections.ConfigDict()
  config.family = "embed"
  config.dataset = "synthetic"
  config.data_dir = "../shared/data"   # folder holding <dataset>/ (relative to the working directory)
  config.extractor = "tiny_llama"

  # Item text: `title: ...; brand: ...; categories: ...` (recsys_core/item_text.py).
  config.text_fields = ()              # () = the dataset's default fields (item_text.DEFAULT_FIELDS)
  config.text_sep = "; "
  config.lowercase = False
  config.prompt = "{text}"             # template around the item text, e.g. for a decoder LLM
  config.text_template = "fields"      # fields | ace_official: "The beauty item has the following
                                       # attributes: ..." over every field (recsys_core/item_text.py)

  config.pooling = "mean"              # mean over real tokens; "last": last real token (decoders)
  config.layer = -1                    # decoders: -1 = final norm output, k = after k blocks
  config.normalize = True              # L2-normalise each vector (sentence-transformers does)
  config.max_len = 0                   # tokens per text; 0 = the model's (256)
  config.batch_size = 64               # texts per forward pass (split over local devices)
  config.min_bucket = 16               # shortest padded length; others x1.5 / x2 up to max_len
  config.seed = 0                      # random init of the tiny models

  config.cache_dir = "cache/embeddings"    # relative to the working directory
  config.use_cache = True              # False: recompute (and overwrite) even on a hit
  config.precomputed = ""              # .npy / .safetensors [items, dim] to use instead of a model
  config.precomputed_ids = ""          # optional: its rows' raw item ids, one per line
  config.precomputed_key = ""          # tensor name in a .safetensors holding several
  config.progress = True

  config.update(PRESETS[arg])
  return config
