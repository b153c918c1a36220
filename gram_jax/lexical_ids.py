"""Semantic-to-lexical translation: item embeddings -> hierarchical IDs made of vocabulary tokens.

Facts of GRAM's official indexing (preprocessing/1_hierarchical_semantics_indexing.ipynb):
  1. Hierarchical k-means with c clusters per level and depth l on the (L2-normalised) item
     embeddings. A node of more than c items is split by k-means into c clusters (empty ones
     dropped); a node of at most c items gives each item its own child, numbered 0.. in item
     order, and a single item then continues with child 0 down to level l. Every item thus has a
     path of exactly l cluster indices.
  2. TF-IDF of every item's tokenised text: tf = token counts within the first 128 tokens, df =
     items whose whole text holds the token, BM25's idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
     A cluster (every prefix of every path, singletons included) scores each token by the MEAN
     tf-idf over its items; its candidates are its 50 best tokens, special tokens, "▁", "▁▁" and
     one-character tokens excluded.
  3. An item's ID: at each level, the best candidate of the item's cluster at that level that is
     not already in the item's ID (a level with no such candidate is skipped).
  4. Items whose IDs coincide all get a numeric suffix token "0", "1", .. (in item order).
Differences here: candidates are ranked among the tokens of positive score, ties by token id
(the official argsort also draws zero-score tokens in an unspecified order), the exclusions are
applied before taking the 50 best, tokens holding "|" or whitespace are excluded too (they could
not be written in an ID file), and suffixing repeats in the (rare) case that a suffixed
ID equals another item's ID.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
import scipy.sparse as sp

from gram_jax import kmeans as kmeans_lib
from gram_jax.tokenizer import Tokenizer, WORD_START
from recsys_core.errors import ConfigError


def hierarchical_clusters(embeddings: np.ndarray, num_clusters: int, depth: int, seed: int = 0,
                          normalize: bool = True, num_restarts: int = 10, max_iters: int = 300,
                          tol: float = 1e-7) -> np.ndarray:
  """[num_items, depth] int32 cluster path of every item (see fact 1 of the module docstring).

  Args:
    embeddings: [num_items, d] float item embeddings (any model's).
    num_clusters: c, children per node.
    depth: l, levels.
    seed: k-means of the node with path p uses key fold_in(...fold_in(PRNGKey(seed), p_1)..., p_j),
      so each node's clustering depends only on its own items and path.
    normalize: L2-normalise the rows first, as the official extractor does.
    num_restarts, max_iters, tol: see `gram_jax.kmeans.kmeans`.
  """
  x = np.asarray(embeddings, np.float32)
  if x.ndim != 2 or not len(x):
    raise ValueError(f"embeddings must be a non-empty [num_items, d] matrix, got {x.shape}")
  if num_clusters < 2 or depth < 1:
    raise ConfigError(f"need num_clusters >= 2 and depth >= 1, got c={num_clusters}, l={depth}")
  if normalize:
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  paths = np.zeros((len(x), depth), np.int32)  # singletons continue with child 0
  stack = [(np.arange(len(x)), 0, jax.random.PRNGKey(seed))]
  while stack:
    items, level, key = stack.pop()
    if level == depth:
      continue
    if len(items) <= num_clusters:
      paths[items, level] = np.arange(len(items))
      continue
    labels = kmeans_lib.kmeans(x[items], num_clusters, key, num_restarts, max_iters, tol).labels
    paths[items, level] = labels
    for j in range(num_clusters):
      child = items[labels == j]
      if len(child):
        stack.append((child, level + 1, jax.random.fold_in(key, j)))
  return paths


def _counts(token_ids: Sequence[Sequence[int]], vocab_size: int) -> sp.csr_matrix:
  """[len(token_ids), vocab_size] float64 token counts of each list."""
  rows = np.repeat(np.arange(len(token_ids)), [len(t) for t in token_ids])
  cols = np.fromiter((t for ids in token_ids for t in ids), np.int64, len(rows))
  m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(token_ids), vocab_size))
  m.sum_duplicates()
  return m


def tfidf_scores(token_ids: Sequence[Sequence[int]], vocab_size: int, tf_max_len: int = 128
                 ) -> sp.csr_matrix:
  """[num_items, vocab_size] float32 tf-idf (fact 2): tf over the first tf_max_len tokens, df
  over the whole text, idf = ln(1 + (N - df + 0.5) / (df + 0.5))."""
  n = len(token_ids)
  df = np.diff(_counts(token_ids, vocab_size).tocsc().indptr).astype(np.float64)
  idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
  tf = _counts([t[:tf_max_len] for t in token_ids], vocab_size)
  return (tf @ sp.diags(idf)).tocsr().astype(np.float32)


def nameable_tokens(tokenizer: Tokenizer) -> np.ndarray:
  """[vocab_size] bool: tokens that may name a cluster (fact 2's exclusions, plus no "|" or
  whitespace, which the ID file format cannot hold)."""
  ok = np.ones(tokenizer.vocab_size, bool)
  for i in range(tokenizer.vocab_size):
    t = tokenizer.token(i)
    ok[i] = (i not in tokenizer.special_ids and t not in (WORD_START, WORD_START * 2)
             and len(t) >= 2 and "|" not in t and not any(ch.isspace() for ch in t))
  return ok


def cluster_candidates(paths: np.ndarray, scores: sp.csr_matrix, nameable: np.ndarray,
                       num_candidates: int = 50) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
  """Candidate tokens of every cluster (fact 2).

  Returns:
    group: per level, [num_items] int64 index of each item's cluster (prefix) at that level;
    candidates: per level, per cluster, int64 token ids by decreasing mean tf-idf (ties: lower id).
  """
  n, depth = paths.shape
  group, candidates = [], []
  scores = scores[:, np.flatnonzero(nameable)].tocsr()  # columns = nameable tokens only
  token_of_column = np.flatnonzero(nameable)
  for level in range(depth):
    _, g = np.unique(paths[:, :level + 1], axis=0, return_inverse=True)
    g = g.reshape(-1).astype(np.int64)
    size = np.bincount(g).astype(np.float64)
    mean = sp.csr_matrix((1.0 / size[g], (g, np.arange(n))), shape=(len(size), n)) @ scores
    mean = mean.tocsr()
    level_candidates = []
    for c in range(len(size)):
      lo, hi = mean.indptr[c], mean.indptr[c + 1]
      cols, vals = mean.indices[lo:hi], mean.data[lo:hi]
      keep = vals > 0
      cols, vals = cols[keep], vals[keep]
      order = np.lexsort((token_of_column[cols], -vals))[:num_candidates]
      level_candidates.append(token_of_column[cols[order]])
    group.append(g)
    candidates.append(level_candidates)
  return group, candidates


def name_items(group: list[np.ndarray], candidates: list[list[np.ndarray]]) -> list[list[int]]:
  """Token ids of every item's ID before collision suffixes (fact 3)."""
  n = len(group[0])
  ids = []
  for item in range(n):
    chosen: list[int] = []
    for level in range(len(group)):
      for token in candidates[level][group[level][item]]:
        if token not in chosen:
          chosen.append(int(token))
          break
    ids.append(chosen)
  return ids


def add_collision_suffixes(ids: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
  """Fact 4: items sharing an ID get suffix tokens "0", "1", .. in item order."""
  out = [tuple(x) for x in ids]
  while True:
    members: dict[tuple, list[int]] = {}
    for item, words in enumerate(out):
      members.setdefault(words, []).append(item)
    clashes = [items for items in members.values() if len(items) > 1]
    if not clashes:
      return out
    for items in clashes:
      for k, item in enumerate(items):
        out[item] = out[item] + (str(k),)


def build_lexical_ids(embeddings: np.ndarray, texts: Sequence[str], tokenizer: Tokenizer,
                      num_clusters: int, depth: int, seed: int = 0, tf_max_len: int = 128,
                      num_candidates: int = 50, normalize: bool = True, num_restarts: int = 10,
                      max_iters: int = 300, tol: float = 1e-7,
                      paths: Optional[np.ndarray] = None) -> list[tuple[str, ...]]:
  """Every item's lexical ID: a tuple of token strings of `tokenizer`, unique across items.

  Args:
    embeddings: [num_items, d] item embeddings (row i = dense item i).
    texts: [num_items] the items' text (lower-cased, as in the fine prompts) to name clusters by.
    tokenizer: its tokens name the clusters (so every level is one of its tokens).
    num_clusters, depth: c and l (paper: Beauty 128/7, Toys 32/5, Sports 32/7, Yelp 32/9).
    paths: [num_items, depth] precomputed cluster paths (skips the clustering).
  Other args: see `hierarchical_clusters`, `tfidf_scores`, `cluster_candidates`.
  """
  if len(texts) != len(embeddings):
    raise ValueError(f"{len(texts)} texts for {len(embeddings)} embedding rows")
  if paths is None:
    paths = hierarchical_clusters(embeddings, num_clusters, depth, seed, normalize,
                                  num_restarts, max_iters, tol)
  token_ids = [tokenizer.encode(t) for t in texts]
  scores = tfidf_scores(token_ids, tokenizer.vocab_size, tf_max_len)
  group, candidates = cluster_candidates(paths, scores, nameable_tokens(tokenizer),
                                         num_candidates)
  named = name_items(group, candidates)
  return add_collision_suffixes([[tokenizer.token(t) for t in ids] for ids in named])
