#!/usr/bin/env bash
# The checks of one GPU lease, run from the repo root on the accelerator machine:
#
#   bash benchmarks/gpu_check.sh plan        # HERE, first (venv active): .gpu/plan/, the ACE rows
#                                            # and GRAM runs finished neither in runs/ nor in the
#                                            # archive (benchmarks/results/runs/{ace,gram})
#   bash benchmarks/gpu_check.sh a SECONDS   # there: env, GPU test subset, ACE grid with SmolLM2
#   bash benchmarks/gpu_check.sh b SECONDS   # there: env, speed benchmarks, ACE grid with MiniLM
#   bash benchmarks/gpu_check.sh c SECONDS   # there: env, every GRAM variant on Beauty and Toys
#
# The machine reaches no network: ml-collections (and, should the image's flax/optax/orbax not run
# our code, our pinned versions of them) come as wheels in .whl/; datasets and cached LLM item
# embeddings in .gpu/ (git-ignored): .gpu/data/<dataset>/user_sequence.txt, .gpu/data_ml/ (ml-100k,
# ml-1m for the LAE benchmark), .gpu/emb_<extractor>/<dataset>.npy (recsys_core/embed's cache rows, dense
# item order). Everything the checks report lands in $OUT (default /tmp/gpu_out); the ACE runs go to
# runs/ace/<dataset>/<init>_<extractor>/seed<N> as on a CPU, and come back as one tarball.
# The carry limit (64 MiB) fits one extractor's embeddings per call: carry .whl, .gpu/data and
# .gpu/emb_smollm2 for phase a; .whl, .gpu/data, .gpu/data_ml and .gpu/emb_minilm for phase b, and
# .gpu/plan for both; .whl, .gpu/plan, .gpu/data_gram (whole dataset folders) and .gpu/emb_minilm for
# phase c (a call drops the ignored paths it does not carry, even on a warm machine). What one lease gave:
# benchmarks/results/gpu_h200.md.
set -u
phase=${1:?phase plan, a, b or c}

# Every ACE row of the issue, seed 0 of all first: 'dataset init extractor seed'.
ace_rows() {  # $1: extractor
  local seed dataset init
  for seed in 0 1 2; do for dataset in amazon_beauty amazon_toys; do
    for init in ace whitenrec llmemb alphafuse whitenrec_plus llm2x raw; do
      echo "$dataset $init $1 $seed"; done
    [ "$1" = smollm2 ] && echo "$dataset id - $seed"
  done; done
}
if [ "$phase" = plan ]; then  # on the machine that holds runs/ace: keep the rows not finished there
  mkdir -p .gpu/plan
  for pair in a:smollm2 b:minilm; do
    ace_rows "${pair#*:}" | while read -r dataset init extractor seed; do
      name=$init; [ "$init" = id ] || name=${init}_$extractor
      for runs in runs/ace benchmarks/results/runs/ace; do  # a run folder or its archived copy
        [ -f "$runs/$dataset/$name/seed$seed/metrics.json" ] && continue 2
      done
      echo "$dataset $init $extractor $seed"
    done > ".gpu/plan/rows_${pair%%:*}.txt"
    echo "phase ${pair%%:*}: $(wc -l < ".gpu/plan/rows_${pair%%:*}.txt") rows to run"
  done
  # GRAM: every variant of gram_results.py on both datasets, all on the GPU (one device for the
  # whole table), into runs/gram_gpu; MiniLM IDs from the carried embeddings
  python - > .gpu/plan/grid_c.txt <<'EOF'
import os
from benchmarks.gram_results import VARIANTS
for dataset in ("amazon_beauty", "amazon_toys"):
  for variant, flags in VARIANTS.items():
    workdir = f"runs/gram_gpu/{dataset}/{variant}"
    if not any(os.path.exists(f"{runs}/{dataset}/{variant}/metrics.json")
               for runs in ("runs/gram_gpu", "runs/gram", "benchmarks/results/runs/gram")):
      print(workdir, f"--config=configs/gram.py:{dataset} --config.data_dir=.gpu/data_gram",
            f"--config.progress=False --config.ids.embeddings=.gpu/emb_minilm/{dataset}.npy", *flags)
EOF
  echo "phase c: $(wc -l < .gpu/plan/grid_c.txt) GRAM runs to run"
  exit 0
fi
budget=${2:?seconds this script may take}
begin=$(date +%s)
left() { echo $((budget - ($(date +%s) - begin))); }
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
exec > >(tee -a "$out/check_$phase.log") 2>&1

export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site

smoke() {
  rm -rf /tmp/smoke
  timeout 240 python3 launch.py --config=configs/ace.py:synthetic_ace_bow --workdir=/tmp/smoke \
    --config.epochs=1 --config.progress=False > /tmp/smoke.log 2>&1
}
if ! smoke; then
  tail -5 /tmp/smoke.log
  echo "the image's flax/optax/orbax failed the smoke run: installing our pins"
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/pins/*.whl
  smoke || { tail -30 /tmp/smoke.log; echo "smoke run failed with our pins too"; exit 1; }
fi
python3 - <<'EOF' | tee "$out/env_$phase.txt"
import importlib.metadata as m, jax
print("device:", jax.devices()[0].device_kind, "x", jax.device_count(), jax.default_backend())
print(" ".join(f"{p}={m.version(p)}" for p in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                              "ml-collections", "numpy", "scipy")))
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$out/env_$phase.txt"
echo "setup done at $(( $(date +%s) - begin ))s"

# ACE grid: 'dataset init extractor seed' per line -> run_grid.py's job lines.
ace_jobs() {
  while read -r dataset init extractor seed; do
    local preset="${dataset}_${init}" dir="runs/ace/$dataset/$init/seed$seed" extra=""
    if [ "$init" != id ]; then
      preset="${preset}_${extractor}"; dir="runs/ace/$dataset/${init}_${extractor}/seed$seed"
      [ -f ".gpu/emb_$extractor/$dataset.npy" ] || continue
      extra="--config.init.embed.precomputed=.gpu/emb_$extractor/$dataset.npy"
    fi
    echo "$dir --config=configs/ace.py:$preset --config.seed=$seed --config.data_dir=.gpu/data" \
      "--config.progress=False $extra"
  done
}

run_grid() {  # $1: job file, [$2: runs folder to pack]; runs until 25 s before the budget
  python3 -m benchmarks.run_grid --jobs="$1" --parallel="${PARALLEL:-10}" \
    --deadline_s=$(( $(left) - 25 )) --python=python3 | tee "$out/grid_$phase.log"
  tar czf "$out/runs_$phase.tgz" --exclude=checkpoints "${2:-runs/ace}"
}

if [ "$phase" = c ]; then
  run_grid .gpu/plan/grid_c.txt runs/gram_gpu
elif [ "$phase" = a ]; then
  # alone, before the grid: its summary (-rfE) and junit file must survive; 8 workers share the GPU
  timeout 200 python3 -m pytest -q -rfE -p no:cacheprovider -p no:benchmark -n 8 \
    --junitxml="$out/tests_gpu.xml" tests/test_lae.py tests/test_ace.py tests/test_anisotropy.py \
    tests/test_initialisers.py tests/test_sasrec.py tests/test_train.py tests/test_metrics.py \
    tests/test_checkpoint.py tests/test_beam_search.py tests/test_t5.py tests/test_dropout.py \
    > "$out/tests_gpu.log" 2>&1
  echo "tests exit $? at $(( $(date +%s) - begin ))s"; tail -25 "$out/tests_gpu.log"
  ace_jobs < .gpu/plan/rows_a.txt > /tmp/grid_a.txt
  run_grid /tmp/grid_a.txt
else
  bench() {  # $1: name, then the command; each gets at most 70 s
    echo "== $1"; shift
    timeout 70 "$@" || echo "(exit $?)"
  }
  bench lae python3 -m benchmarks.lae_speed --data_dir=.gpu/data_ml --out="$out/lae_speed_gpu.md"
  bench seqrec python3 -m benchmarks.seqrec_speed --data_dir=.gpu/data --pack_multiple=8 \
    --out="$out/seqrec_speed_gpu.md"
  bench gram python3 -m benchmarks.gram_decode_speed --out="$out/gram_decode_speed_gpu.md"
  bench ace python3 -m benchmarks.ace_speed --sizes=12101x576,100000x4096 --out="$out/ace_speed_gpu.md"
  echo "benchmarks done at $(( $(date +%s) - begin ))s"
  # phase a's unfinished runs first: their checkpoints stay on a warm machine, but a call drops the
  # ignored paths it does not carry, so only those whose embeddings came again can resume
  { for f in .gpu/emb_*/; do grep -h "precomputed=$f" /tmp/grid_a.txt 2>/dev/null; done
    ace_jobs < .gpu/plan/rows_b.txt
  } > /tmp/grid_b.txt
  run_grid /tmp/grid_b.txt
fi
echo "phase $phase done at $(( $(date +%s) - begin ))s"
