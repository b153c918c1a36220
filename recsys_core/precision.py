"""Matrix-product precision of the closed forms (the LAE family's scoring, ACE, the eigen sweep).

Accelerators run a default-precision float32 product in TF32 or bf16 passes (about 3 decimal
digits), which would move the closed forms' results in the fourth digit; these products ask for
full float32 (`HIGHEST`) on every backend. Trained models (SASRec, GRAM) use the default.
"""

import jax

HIGHEST = jax.lax.Precision.HIGHEST
