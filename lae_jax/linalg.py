"""The one linear-algebra kernel of the LAE family: C = (X^T X + diagMat(d))^-1.

Two exact ways, chosen by the shape of X (users x items):
  * direct (items <= users): the dense Gram matrix G = X^T X plus the diagonal, inverted by Cholesky.
  * Woodbury (users < items, e.g. gowalla strong 23,858 users x 40,981 items): with D = diagMat(d),
      C = D^-1 - D^-1 X^T (I_m + X D^-1 X^T)^-1 X D^-1,
    so only the smaller users x users SPD system is inverted and X stays sparse.

The SPD inverse itself runs on LAPACK's potrf+potri in place on the host when the default JAX backend
is the CPU (faster than XLA's CPU Cholesky + triangular solves, benchmarks/results/lae_speed.md,
and it needs no second n x n buffer), and as a jit-compiled Cholesky
solve on accelerators.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

from lae_jax import gram as gram_lib
from recsys_core.errors import ConfigError


def gram_matrix(x: sp.spmatrix, dtype=np.float32) -> np.ndarray:
  """G = X^T X as a dense [n, n] array of `dtype`, computed sparse (X is never densified)."""
  g = (x.T @ x).astype(dtype)
  return g.toarray()


def item_counts(x: sp.spmatrix) -> np.ndarray:
  """diag(X^T X) for binary X: [n] float64 number of users of each item."""
  return np.asarray(x.sum(axis=0), dtype=np.float64).ravel()


def default_inverse_backend() -> str:
  """'lapack' on a CPU-only JAX runtime, 'jax' when an accelerator is the default backend."""
  return "lapack" if jax.default_backend() == "cpu" else "jax"


@jax.jit
def _spd_inverse_jax_kernel(a: jax.Array) -> tuple[jax.Array, jax.Array]:
  factor = jax.scipy.linalg.cho_factor(a, lower=True)
  # XLA's Cholesky does not report failure: a matrix that is not positive definite leaves NaN in
  # the factor's diagonal.
  definite = jnp.all(jnp.isfinite(jnp.diagonal(factor[0])))
  return jax.scipy.linalg.cho_solve(factor, jnp.eye(a.shape[0], dtype=a.dtype)), definite


def _spd_inverse_jax(a: jax.Array) -> jax.Array:
  inverse, definite = _spd_inverse_jax_kernel(a)
  if not bool(definite):
    raise np.linalg.LinAlgError("Cholesky failed: matrix is not positive definite")
  return inverse


# scipy's multithreaded OpenBLAS potrf segfaults above ~27k rows (seen at 29,858 with 2 threads,
# fine at 23,858 and with 1 thread); larger factorisations are split into blocks below this size.
_POTRF_MAX_ROWS = 16384


def _cholesky_lower(at: np.ndarray) -> None:
  """Overwrite the lower triangle of the Fortran-ordered SPD `at` with its Cholesky factor L.

  Above _POTRF_MAX_ROWS: L11 = chol(A11), L21 = A21 L11^-T (trsm), A22 -= L21 L21^T (syrk),
  L22 = chol(A22), recursively; all BLAS-3, so the flops and the speed are those of one potrf.
  """
  n = at.shape[0]
  if n <= _POTRF_MAX_ROWS:
    potrf, = lapack.get_lapack_funcs(("potrf",), (at,))
    factor, info = potrf(at, lower=True, overwrite_a=True, clean=False)
    if info != 0:
      raise np.linalg.LinAlgError(f"potrf failed (info={info}): matrix is not positive definite")
    if factor is not at and not np.shares_memory(factor, at):  # f2py copied a strided block
      at[...] = factor
    return
  trsm, syrk = blas.get_blas_funcs(("trsm", "syrk"), (at,))
  n1 = n // 2
  _cholesky_lower(at[:n1, :n1])
  at[n1:, :n1] = trsm(1.0, at[:n1, :n1], at[n1:, :n1], side=1, lower=1, trans_a=1)
  at[n1:, n1:] = syrk(-1.0, at[n1:, :n1], beta=1.0, c=at[n1:, n1:], lower=1)
  _cholesky_lower(at[n1:, n1:])


def _spd_inverse_lapack(a: np.ndarray) -> np.ndarray:
  """In-place (overwrites `a`) Cholesky inverse; returns the full symmetric inverse."""
  potri, = lapack.get_lapack_funcs(("potri",), (a,))
  # LAPACK is column-major; a C-ordered symmetric matrix is its own transpose, so pass a.T
  # (Fortran-ordered view, no copy) and let potrf/potri work on it in place.
  at = a.T
  _cholesky_lower(at)
  inv, info = potri(at, lower=True, overwrite_c=True)
  if info != 0:
    raise np.linalg.LinAlgError(f"potri failed (info={info})")
  inv = inv.T  # back to the C-ordered view of the same buffer; its upper triangle holds the result
  _copy_upper_to_lower(inv)
  return inv


def _copy_upper_to_lower(a: np.ndarray, block: int = 2048) -> None:
  """Mirror the upper triangle into the lower one in place, block by block (no index arrays)."""
  n = a.shape[0]
  for i in range(0, n, block):
    diag = a[i:i + block, i:i + block]
    diag[:] = np.triu(diag) + np.triu(diag, 1).T
    for j in range(i + block, n, block):
      a[j:j + block, i:i + block] = a[i:i + block, j:j + block].T


def spd_inverse(a: np.ndarray, backend: str | None = None) -> np.ndarray | jax.Array:
  """Inverse of a dense symmetric positive-definite [n, n] matrix (may overwrite `a`).

  backend: 'lapack' (host, in place) or 'jax' (jit Cholesky); None picks `default_inverse_backend()`.
  """
  backend = backend or default_inverse_backend()
  if backend == "lapack":
    return _spd_inverse_lapack(np.asarray(a))
  if backend == "jax":
    return _spd_inverse_jax(jnp.asarray(a))
  raise ValueError(f"unknown inverse backend {backend!r}; use 'lapack' or 'jax'")


def _transpose(a: np.ndarray, block: int = 512) -> np.ndarray:
  """C-ordered a^T, copied in cache-sized blocks (numpy's strided copy of a large matrix misses the cache on
  almost every read)."""
  out = np.empty(a.shape[::-1], a.dtype)
  for i in range(0, a.shape[0], block):
    for j in range(0, a.shape[1], block):
      out[j:j + block, i:i + block] = a[i:i + block, j:j + block].T
  return out


def inverse_direct(x: sp.spmatrix, d: np.ndarray, dtype=np.float32, backend=None, mesh=None):
  """(X^T X + diagMat(d))^-1 through the dense [n, n] Gram matrix, accumulated over `mesh`'s
  devices when one is given (`lae_jax.gram`), else computed sparse on the host."""
  a = gram_matrix(x, dtype) if mesh is None else gram_lib.gram_matrix_on_mesh(x, mesh, dtype)
  a[np.diag_indices_from(a)] += d.astype(dtype)
  return spd_inverse(a, backend)


def _woodbury_right(x: sp.spmatrix, d: np.ndarray, dtype, backend):
  """(D^-1 X^T sparse [n, m], K X D^-1 dense [m, n]) with K = (I_m + X D^-1 X^T)^-1."""
  x = sp.csr_matrix(x, dtype=dtype)
  d_inv = (1.0 / np.asarray(d, np.float64)).astype(dtype)
  x_scaled = x @ sp.diags(d_inv)                        # X D^-1, sparse [m, n]
  inner = (x_scaled @ x.T).toarray()                    # X D^-1 X^T, dense [m, m]
  inner[np.diag_indices_from(inner)] += 1.0
  k = np.asarray(spd_inverse(inner, backend), dtype=dtype)
  del inner
  x_scaled_t = x_scaled.T.tocsr()                       # D^-1 X^T, sparse [n, m]
  right = _transpose(x_scaled_t @ k)                    # K X D^-1 = (D^-1 X^T K)^T, dense [m, n]
  return x_scaled_t, right


def inverse_woodbury(x: sp.spmatrix, d: np.ndarray, dtype=np.float32, backend=None) -> np.ndarray:
  """(X^T X + diagMat(d))^-1 by the Woodbury identity; inverts an [m, m] users system.

  Peak memory: the [m, m] inverse, one [m, n] and one [n, n] dense array.
  """
  x_scaled_t, right = _woodbury_right(x, d, dtype, backend)
  c = x_scaled_t @ right                                # D^-1 X^T K X D^-1, dense [n, n]
  del right
  # C = D^-1 - D^-1 X^T K X D^-1; it is symmetric up to float round-off, which B does not need.
  np.negative(c, out=c)
  c[np.diag_indices_from(c)] += (1.0 / np.asarray(d, np.float64)).astype(dtype)
  return c


def woodbury_training_rows(x: sp.spmatrix, d: np.ndarray, dtype=np.float32, backend=None):
  """X C ([m, n]) and diag(C) ([n]) without forming the [n, n] C.

  For the training rows themselves X C = (I - H K) X D^-1 = K X D^-1 (H = X D^-1 X^T, K = (I + H)^-1,
  so I - H K = K), and diag(C)_j = (1 - sum_u X_uj (K X D^-1)_uj) / d_j. Weak generalization ranks
  for the training users, so their scores X B = X - X C diagMat(scale) come at the cost of the solve.
  """
  x_scaled_t, right = _woodbury_right(x, d, dtype, backend)
  x = sp.csr_matrix(x)
  rows, cols = x.nonzero()
  overlap = np.bincount(cols, weights=right[rows, cols], minlength=x.shape[1])
  c_diag = (1.0 - overlap) / np.asarray(d, np.float64)
  return right, c_diag.astype(dtype)


def choose_method(x: sp.spmatrix) -> str:
  """'woodbury' when there are fewer users than items (the smaller system to invert), else 'direct'."""
  return "woodbury" if x.shape[0] < x.shape[1] else "direct"


def inverse_with_diagonal(x: sp.spmatrix, d: np.ndarray, *, dtype=np.float32, method: str = "auto",
                          backend: str | None = None, mesh: jax.sharding.Mesh | None = None):
  """C = (X^T X + diagMat(d))^-1, [n, n] of `dtype`.

  Args:
    x: [m, n] binary sparse user x item matrix.
    d: [n] positive diagonal regulariser (lambda, or gamma of the dropout models).
    method: 'direct', 'woodbury' or 'auto' (`choose_method`).
    backend: SPD inverse backend, see `spd_inverse`.
    mesh: for 'direct', the devices over which the Gram matrix is accumulated (None: the host).
      The Woodbury route's users x users system is built on the host of each process.
  """
  method = choose_method(x) if method == "auto" else method
  if method == "direct":
    return inverse_direct(x, d, dtype, backend, mesh)
  if method == "woodbury":
    return inverse_woodbury(x, d, dtype, backend)
  raise ConfigError(f"unknown solve method {method!r}; use 'auto', 'direct' or 'woodbury'")


def available_memory_bytes() -> int | None:
  """Memory this process may still allocate: /proc/meminfo's MemAvailable, capped by a cgroup
  limit (memory.max) when one is set; None where neither can be read."""
  found = []
  try:
    with open("/proc/meminfo") as f:
      found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    with open("/sys/fs/cgroup/memory.max") as f:
      limit = f.read().strip()
    if limit.isdigit():
      with open("/sys/fs/cgroup/memory.current") as f:
        found.append(int(limit) - int(f.read().strip()))
  except (OSError, ValueError):
    pass
  return min(found) if found else None


def check_dense_fits(num_items: int, dtype, method: str) -> None:
  """Refuse, before allocating, a solve whose dense [n, n] matrix (the Gram matrix of the direct
  route, C of the Woodbury one: both routes hold one) exceeds the memory available."""
  needed = num_items * num_items * np.dtype(dtype).itemsize
  available = available_memory_bytes()
  if available is not None and needed > available:
    raise ConfigError(
        f"config.solve_method={method!r} needs a dense {num_items} x {num_items} {np.dtype(dtype).name} "
        f"matrix ({needed / 2**30:.1f} GiB) but {available / 2**30:.1f} GiB of memory is available; "
        "free memory, use a larger machine, or --config.dtype=float32 if it is float64")


def check_training_rows_fit(num_users: int, num_items: int, dtype) -> None:
  """Refuse, before allocating, the weak-generalization route (`woodbury_training_rows`) when its
  [m, m] inverse and two dense [m, n] arrays (D^-1 X^T K and its transpose) exceed the memory
  available; it never holds an [n, n] matrix."""
  itemsize = np.dtype(dtype).itemsize
  needed = (num_users * num_users + 2 * num_users * num_items) * itemsize
  available = available_memory_bytes()
  if available is not None and needed > available:
    raise ConfigError(
        f"config.solve_method='woodbury' ranks the {num_users} training users from a {num_users} x "
        f"{num_users} inverse and two {num_users} x {num_items} {np.dtype(dtype).name} arrays "
        f"({needed / 2**30:.1f} GiB) but {available / 2**30:.1f} GiB of memory is available; free "
        "memory, use a larger machine, or --config.dtype=float32 if it is float64")
