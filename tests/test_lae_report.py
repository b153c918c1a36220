"""benchmarks/lae_results.py: lae.md regenerates from the committed archive alone (a fresh clone),
archives a finished run's small outputs, and marks rows without a run."""

import json
import os
import shutil
import subprocess
import sys

from recsys_core import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ("recall@20", "ndcg@20", "precision@20", "urecall@20", "undcg@20", "head_recall@20",
           "tail_recall@20", "recall@50", "ndcg@100")


def _fake_run(folder, model, value, search=False):
  """A finished LAE run as launch.py and the driver leave it (plus a search.jsonl when searched)."""
  metrics = {f"test/{c}": value for c in COLUMNS}
  metrics.update({"time/solve_s": 12.0, "time/eval_s": 3.0, "solve/method": "woodbury",
                  "solve/backend": "lapack", "solve/num_active": 7, "memory/peak_rss_gb": 1.5,
                  "hparams/lam": 200.0, "hparams/p": 0.9, "hparams/xi": 0.3})
  if model == "gfcf":
    metrics.update({"hparams/alpha": 0.1, "hparams/gfcf_vectors": 256, "solve/method": "gfcf",
                    "solve/backend": "arpack"})
  config = {"search": {"lam": [10.0, 200.0, 1000.0], "p": [0.1, 0.9], "xi": [0.1, 0.3, 0.5]}}
  if search:
    metrics.update({"time/search_s": 90.0, "search/points": 18, "search/solves": 6,
                    "search/route": "inverse"})
    with open(os.path.join(folder, "search.jsonl"), "w") as f:
      for lam in config["search"]["lam"]:
        f.write(json.dumps({"lam": lam, "p": 0.9, "xi": 0.3, "num_active": 2,
                            "valid/ndcg@100": 0.1, "valid/recall@20": 0.2, "valid/ndcg@20": 0.3,
                            "valid/precision@20": 0.05, "valid/head_recall@20": 0.4}) + "\n")
  records.write_json(os.path.join(folder, "metrics.json"), metrics)
  records.write_json(os.path.join(folder, "config.json"), config)
  records.write_json(os.path.join(folder, "launch.json"), {
      "command": "python launch.py ...", "exit": 0, "wall_s": 20.0, "load_before": [3.0, 2.0, 1.0],
      "load_after": [5.5, 2.0, 1.0], "nice": 19, "hardware": "2-core test CPU, 1 GiB of memory.",
      "software": "Python 3, jax 0 (jax backend cpu)."})


def _generate(runs, out):
  subprocess.run([sys.executable, "-m", "benchmarks.lae_results", "--norun", f"--runs_dir={runs}",
                  f"--out={out}"], cwd=ROOT, check=True, capture_output=True)


def test_lae_report_regenerates_from_the_archive(tmp_path):
  runs, out = tmp_path / "runs", tmp_path / "results" / "lae.md"
  for name, model, value, search in (("rlae_gowalla_strong", "rlae", 0.25, False),
                                     ("gfcf_gowalla_strong", "gfcf", 0.2, False),
                                     ("rdlae_ml-1m_strong", "rdlae", 0.4, True),
                                     ("rdlae_gowalla_strong_search_point", "rdlae", 0.25, True)):
    (runs / name).mkdir(parents=True)
    _fake_run(str(runs / name), model, value, search)
  (runs / "ease_gowalla_weak").mkdir()
  (runs / "ease_gowalla_weak" / "log.txt").write_text("error: gowalla_weak/train.txt line 2: bad id\n")
  out.parent.mkdir()
  out.write_text("old tables\n<!-- notes: hand-written, kept when the tables are regenerated -->\n"
                 "my analysis\n")
  _generate(runs, out)
  text = open(out).read()
  lines = text.splitlines()
  assert text.startswith("# Linear autoencoders on real data\n\n## Setup\n")
  assert "- Hardware: 2-core test CPU, 1 GiB of memory." in lines
  assert any(line.startswith("- Load: 4 runs") and "3.0-5.5" in line for line in lines)
  assert "| rlae | λ=200, ξ=0.3 | " + " | ".join(["0.2500"] * 9) + " | 12.0 | woodbury/lapack | 7 | 1.5 |" in lines
  assert any(line.startswith("| gfcf | α=0.1, k=256 | 0.2000 |") and "gfcf/arpack" in line
             for line in lines)
  assert "| lae | pending |" + " |" * 13 in lines                       # never run
  assert any(line.startswith("| ease | error: gowalla_weak/train.txt line 2") for line in lines)
  assert "| rdlae | 3 λ x 2 p x 3 ξ (18 points) | 6 inverses | 90 | λ=200, p=0.9, ξ=0.3 | p |" in lines
  assert any(line.startswith("| rdlae | rdlae λ=200, p=0.9, 18 ξ | 90 (6) |") for line in lines)
  assert "| ease_gowalla_strong_direct | pending | | | ease_gowalla_strong | | | |" in lines
  assert "EXTRAPOLATED" in text
  for link in ("[lae_xi.md](lae_xi.md)", "[lae_spectrum.md](lae_spectrum.md)", "(lae_xi_curve.png)",
               "(lae_spectrum.png)"):
    assert link in text
  assert text.endswith("<!-- notes: hand-written, kept when the tables are regenerated -->\nmy analysis\n")
  assert "old tables" not in text

  archive = tmp_path / "results" / "runs" / "lae"
  assert sorted(os.listdir(archive)) == ["gfcf_gowalla_strong", "rdlae_gowalla_strong_search_point",
                                         "rdlae_ml-1m_strong", "rlae_gowalla_strong"]
  assert sorted(os.listdir(archive / "rdlae_ml-1m_strong")) == [
      "config.json", "launch.json", "metrics.json", "search.jsonl"]
  point = json.loads(open(archive / "rdlae_ml-1m_strong" / "search.jsonl").readline())
  assert sorted(point) == sorted(["lam", "p", "xi", "num_active", "valid/ndcg@100",
                                  "valid/recall@20", "valid/ndcg@20"])   # cut to what a report needs

  shutil.rmtree(runs)                          # a fresh clone: only the archive is left
  _generate(runs, out)
  again = open(out).read()
  assert again == text.replace("| ease | error: gowalla_weak/train.txt line 2: bad id |",
                               "| ease | pending |")   # the log went with the run folder
