"""experiments/prior_table.py on tiny settings: every row has the issue's keys, each sweep setting is its own sample
set, a rerun does no work and keeps the table as it was, and a new setting adds only its own work and row. FID is
stubbed (Inception on CPU runs at ~5 images/s); the reports around it are the pipeline's own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))  # the scripts import their helpers as top-level modules

import prior_table  # noqa: E402
from prior_rows import ISSUE_KEYS, markdown  # noqa: E402

TINY = """
data: {name: digits, image_size: 16}
tokenizer:
  hidden_channels: 16
  res_channels: 8
  n_res_blocks: 1
  embed_dim: 8
  quantizer: {name: vq, codebook_size: 16}
  train: {max_epochs: 1, max_steps: 6}
prior:
  gpt: {n_layer: 1, n_head: 2, n_embd: 16}
  maskgit: {n_layer: 1, n_head: 2, n_embd: 16}
  train: {max_epochs: 1, max_steps: 4}
fid: {max_reference: 24}
"""


def fake_metrics(generated, reference, cache_name, weights, cache_dir=None, batch_size=64, precision_recall=True,
                 feature_path="exact", devices=1, accelerator="cpu"):
    out = {"fid": float(generated.float().mean()), "kid_mean": 0.01, "kid_std": 0.001}
    return {**out, "precision": 0.5, "recall": 0.5} if precision_recall else out


@pytest.fixture
def worked(monkeypatch):
    """The names of the steps that did work (not skipped), FID stubbed."""
    import pipeline.runner

    monkeypatch.setattr("pipeline.fid.compute_metrics", fake_metrics)
    monkeypatch.setattr("pipeline.fid.check_weights_available", lambda weights: None)
    done: list[str] = []
    real = pipeline.runner.run_step

    def recording(step):
        seconds = real(step)
        if seconds is not None:
            done.append(step.name)
        return seconds

    monkeypatch.setattr(pipeline.runner, "run_step", recording)
    return done


def test_table_rows_and_rerun(tmp_path, monkeypatch, worked):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n{TINY}")
    results, grids = tmp_path / "results" / "priors.json", tmp_path / "results"

    def table(*extra):
        argv = ["prior_table.py", "-c", str(config), "--archs", "gpt,maskgit", "--n", "8", "--cfg-scales", "0,2",
                "--maskgit-steps", "2", "--choice-temperatures", "4.5,1", "--maskgit-sweep-scale", "2", "--floor",
                "--results", str(results), "--grid-dir", str(grids), *extra]
        monkeypatch.setattr(sys, "argv", argv)
        worked.clear()
        prior_table.main()
        return json.loads(results.read_text())

    rows = table()
    samples = sorted(path.name for path in (tmp_path / "run").glob("samples-*"))
    assert samples == ["samples-gpt-cfg0", "samples-gpt-cfg2", "samples-maskgit-cfg0-steps2-ct4.5",
                       "samples-maskgit-cfg2-steps2-ct1", "samples-maskgit-cfg2-steps2-ct4.5"]
    assert [row["prior"] for row in rows] == ["real data", "reconstruction", "gpt", "gpt", "maskgit", "maskgit",
                                              "maskgit"]
    for row in rows:
        assert list(row)[: len(ISSUE_KEYS) - 1] == list(ISSUE_KEYS[:-1]) and "command" in row, row
        assert row["fid_path"] == "exact" and "--floor" in row["command"]
    generated = [row for row in rows if row["prior"] in ("gpt", "maskgit")]
    assert all(row["n_samples"] == 8 and row["sample_seconds"] > 0 and row["nll_bits"] > 0 for row in generated)
    assert [row["conditional"] for row in generated] == [False, True, False, True, True]
    assert rows[0]["n_samples"] == 24 and rows[1]["n_samples"] == 24  # real-vs-real: as many as the reference
    assert {row["prior"] for row in rows if "grid" in row} == {"gpt", "maskgit"}
    assert (grids / "samples-gpt.png").exists() and (grids / "samples-maskgit.png").exists()
    assert "| maskgit |" in (grids / "priors.md").read_text()

    # A rerun does no work and leaves the same rows (train seconds still known).
    again = table()
    assert worked == []
    strip = lambda table: [{k: v for k, v in row.items() if k != "machine"} for row in table]  # noqa: E731
    assert strip(again) == strip(rows)
    assert all(row["train_seconds"] is not None for row in again if row["prior"] == "gpt")

    # A new scale: only its samples and report are made, and its row joins the others.
    third = table("--archs", "gpt", "--cfg-scales", "0,1,2")
    assert worked == ["sample gpt cfg1", "fid"]
    assert len(third) == len(rows) + 1 and [r["cfg_scale"] for r in third if r["prior"] == "gpt"] == [0, 1, 2]


def test_markdown_tells_a_prior_trained_without_labels_from_the_null_class():
    """Both are unconditional rows at scale 0; only the marker tells them apart in the Markdown table."""
    row = {"tokenizer": "vq", "prior": "gpt", "conditional": False, "cfg_scale": 0.0, "n_samples": 10, "fid": 9.0,
           "kid": None, "precision": None, "recall": None, "nll_bits": None, "sample_seconds": None}
    lines = markdown([{**row, "trained_with_labels": True}, {**row, "trained_with_labels": False}]).splitlines()
    assert lines[2].startswith("| vq | gpt | False |")
    assert lines[3].startswith("| vq | gpt (no labels) | False |")
