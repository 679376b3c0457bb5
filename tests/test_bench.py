"""Smoke tests of `vqgen bench` at tiny sizes: the harness runs, tables print, the JSON holds sane rows.

The numbers themselves are not checked (tiny shapes on a shared CPU say nothing); the full benchmark is
`uv run --group bench vqgen bench`. The peer library is optional: its test is skipped when it is not installed.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from benchmarks.bench import make_settings
from benchmarks.naive_vq import OneHotVectorQuantizer
from pipeline.cli import app
from stage1_tokenizer.quantizers import build_quantizer


def test_cli_quick_writes_table_and_json(tmp_path, monkeypatch):
    monkeypatch.delenv("VQGEN_INCEPTION_WEIGHTS", raising=False)  # so section d reports a skip, quickly
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "b,d,e", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "tokenizer training" in result.output and "ours better by" in result.output

    payload = json.loads(out.read_text())
    assert payload["environment"]["quick"] is True
    rows = {(row["section"][0], row["case"]): row for row in payload["rows"]}
    training = [row for (section, _), row in rows.items() if section == "b"]
    assert len(training) == 3 and all(row["ours"] > 0 and row["baseline"] > 0 for row in training)  # + layout row
    fid = [row for (section, _), row in rows.items() if section == "d"]
    assert len(fid) == 1 and fid[0]["note"].startswith("skipped: no Inception weights")
    memory = [row for (section, _), row in rows.items() if section == "e"]
    assert memory and all("never holds all N x K" in row["note"] for row in memory)
    assert all(row["ours"] < row["baseline"] for row in memory)  # chunked: less than the full matrix


def test_quantizer_section_against_peer():
    pytest.importorskip("vector_quantize_pytorch")
    from benchmarks import quantizer_bench

    rows = quantizer_bench.run(make_settings(quick=True))
    assert {row.case.split()[0] for row in rows} >= {"vq", "ema", "fsq", "lfq", "rvq"}
    for row in rows:
        assert row.ours > 0 and row.baseline > 0 and row.ratio > 0, row


def test_unknown_section_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--only", "a,z", "--json", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "unknown section(s) z" in result.output


def test_naive_baseline_is_the_same_quantizer():
    """The tutorial baseline must compute what ours computes, or section b would compare different models."""
    torch.manual_seed(0)
    ours = build_quantizer("vq", 8, {"codebook_size": 32, "beta": 0.25})
    naive = OneHotVectorQuantizer(8, 32, beta=0.25)
    naive.codebook.weight.data.copy_(ours.codebook.weight.data)
    z = torch.randn(2, 8, 4, 4)
    expected, got = ours(z), naive(z)
    assert torch.equal(expected.codes, got.codes)
    torch.testing.assert_close(got.z_q, expected.z_q)
    torch.testing.assert_close(got.loss, expected.loss)


@pytest.mark.slow
def test_sampling_section_quick():
    from benchmarks import sampling_bench

    rows = sampling_bench.run(make_settings(quick=True))
    assert rows[0].case.startswith("gpt KV cache vs none") and rows[0].ours > 0 and rows[0].baseline > 0


def test_prior_training_section_compares_the_same_weights():
    from benchmarks import prior_train_bench
    from stage2_prior.config import PriorConfig
    from stage2_prior.registry import build_prior

    for arch in ("gpt", "maskgit"):
        prior = build_prior(PriorConfig(arch=arch, grid=[2, 2], codebook_sizes=[16], num_classes=3))
        before = prior_train_bench._before(prior)
        ours_state, before_state = prior.state_dict(), before.state_dict()
        assert ours_state.keys() == before_state.keys()
        assert all(torch.equal(ours_state[k], before_state[k]) for k in ours_state)
    rows = prior_train_bench.run(make_settings(quick=True))
    assert [row.case.split(",")[0] for row in rows] == ["gpt", "maskgit"]
    assert all(row.ours > 0 and row.baseline > 0 and "bf16 autocast" in row.note for row in rows)


def test_streamed_tokenize_section_quick():
    from benchmarks.bench import make_settings
    from benchmarks.streamed_tokenize_bench import run

    rows = run(make_settings(quick=True))
    assert [row.raw["count"] for row in rows] == [40, 400]
    assert all(row.ours > 0 and row.raw["images_per_s"] > 0 for row in rows)
    assert rows[1].baseline == rows[0].ours and rows[1].target is not None
