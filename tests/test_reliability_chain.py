"""The whole chain (`vqgen run CONFIG`) killed mid-way and run again finishes only what is left, and ends with the
files of an uninterrupted run. A finished step whose files are damaged, or whose inputs changed, is redone, never
reused. FID is stubbed here (Inception on CPU runs at ~5 images/s); its skip logic is the runner's, kept as is."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers_reliability import (PRIOR_TINY, TOKENIZER_TINY, fork_cli, invoke, kill_self, same_weights, sets,
                                 temporaries, wait_for)

STEPS = ["tokenizer", "tokenize train", "tokenize test", "prior gpt", "sample", "fid"]
CHAIN = [*TOKENIZER_TINY, *PRIOR_TINY, "sample.n=8"]


def fake_fid_report(cfg, samples_dir, tokenizer_dir, out, fingerprint_value=None):
    from pipeline.core.files import write_json

    n = len(list((Path(samples_dir) / "png").glob("*.png")))
    result = {"fingerprint": fingerprint_value, "samples": str(samples_dir), "generation": {"fid": float(n)}}
    write_json(Path(out) / "metrics.json", result)
    return result


def stub_fid():
    import pipeline.steps.fid

    pipeline.steps.fid.run = fake_fid_report


@pytest.fixture(autouse=True)
def no_inception(monkeypatch):
    monkeypatch.setattr("pipeline.steps.fid.run", fake_fid_report)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the forked children, so that all runs do the same floating-point work
    yield
    torch.set_num_threads(before)


def chain_args(config: Path, run: Path, extra=()) -> list[str]:
    return ["run", config, "--run-dir", run, *sets([*CHAIN, *extra])]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "chain.yaml"
    path.write_text("seed: 0\nsample: {label: all}\n")
    return path


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    """One uninterrupted chain."""
    import pipeline.steps.fid

    saved = pipeline.steps.fid.run
    pipeline.steps.fid.run = fake_fid_report
    try:
        run = tmp_path_factory.mktemp("reference") / "run"
        code, output = invoke(chain_args(config, run))
        assert code == 0, output
    finally:
        pipeline.steps.fid.run = saved
    return run


def skipped(output: str) -> set[str]:
    return set(re.findall(r"✓ (.+?): done already", output))


def rerun(config: Path, run: Path, extra=()) -> set[str]:
    """Run the chain again; return the steps it redid."""
    code, output = invoke(chain_args(config, run, extra))
    assert code == 0, output
    return set(STEPS) - skipped(output)


def same_outputs(run: Path, reference: Path) -> None:
    assert same_weights(run / "tokenizer", reference / "tokenizer")
    assert same_weights(run / "prior-gpt", reference / "prior-gpt")
    for split in ("train", "test"):
        a = load_file(str(run / "codes" / split / "codes.safetensors"))
        b = load_file(str(reference / "codes" / split / "codes.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in b)
    a = load_file(str(run / "samples-gpt" / "codes.safetensors"))
    b = load_file(str(reference / "samples-gpt" / "codes.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert len(list((run / "samples-gpt" / "png").iterdir())) == 8


def test_chain_killed_three_times_finishes_what_is_left(config, reference, tmp_path):
    run = tmp_path / "run"
    args = chain_args(config, run)

    # 1. SIGKILL during the tokenizer's training, once its first checkpoint is there.
    code = fork_cli(args, tmp_path / "1.log", inject=stub_fid,
                    kill_when=wait_for(run / "tokenizer" / "checkpoints" / "last.ckpt"))
    assert code == -signal.SIGKILL, (tmp_path / "1.log").read_text()[-2000:]
    assert not (run / "tokenizer" / "config.json").exists()

    # 2. Again during the prior's training: the tokenizer and both code splits are finished by then.
    code = fork_cli(args, tmp_path / "2.log", inject=stub_fid,
                    kill_when=wait_for(run / "prior-gpt" / "checkpoints" / "last.ckpt"))
    assert code == -signal.SIGKILL, (tmp_path / "2.log").read_text()[-2000:]
    assert "tokenizer: done already" not in (tmp_path / "2.log").read_text()  # it had to finish it
    tokenizer_mtime = (run / "tokenizer" / "model.safetensors").stat().st_mtime_ns
    codes_mtime = (run / "codes" / "train" / "codes.safetensors").stat().st_mtime_ns

    # 3. Again while the samples are being written (after three of the eight PNG files).
    def kill_while_saving_pngs():
        stub_fid()
        import pipeline.steps.sample as sample_step

        real, count = sample_step.save_png, []

        def save_png(image, path):
            real(image, path)
            count.append(path)
            if len(count) == 3 and Path(path).parent.name == "png":
                kill_self()

        sample_step.save_png = save_png

    code = fork_cli(args, tmp_path / "3.log", inject=kill_while_saving_pngs)
    assert code == -signal.SIGKILL, (tmp_path / "3.log").read_text()[-2000:]
    log = (tmp_path / "3.log").read_text()
    assert {"tokenizer", "tokenize train", "tokenize test"} <= skipped(log)
    assert not (run / "samples-gpt").exists()  # only ever a temporary folder

    # The last run does only what is left: sampling and the report.
    assert rerun(config, run) == {"sample", "fid"}
    assert (run / "tokenizer" / "model.safetensors").stat().st_mtime_ns == tokenizer_mtime
    assert (run / "codes" / "train" / "codes.safetensors").stat().st_mtime_ns == codes_mtime
    same_outputs(run, reference)
    assert temporaries(run) == []
    assert rerun(config, run) == set()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_last_byte(path: Path) -> None:
    """A change that still parses: the last byte of the last tensor's data."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, redone", [
    (lambda run: truncate(run / "tokenizer" / "model.safetensors"), {"tokenizer"}),
    (lambda run: (run / "tokenizer" / "config.json").write_text("{not json"), {"tokenizer"}),
    (lambda run: truncate(run / "codes" / "train" / "codes.safetensors"), {"tokenize train"}),
    (lambda run: flip_last_byte(run / "codes" / "test" / "codes.safetensors"), {"tokenize test"}),
    (lambda run: truncate(run / "prior-gpt" / "model.safetensors"), {"prior gpt"}),
    (lambda run: flip_last_byte(run / "samples-gpt" / "codes.safetensors"), {"sample"}),
    (lambda run: (run / "samples-gpt" / "png" / "00003.png").unlink(), {"sample"}),
    (lambda run: truncate(run / "report" / "metrics.json"), {"fid"}),
], ids=["tokenizer-weights-truncated", "tokenizer-config-garbled", "train-codes-truncated", "test-codes-byte-flipped",
        "prior-weights-truncated", "sample-codes-byte-flipped", "sample-png-missing", "report-truncated"])
def test_damaged_outputs_are_redone(config, reference, tmp_path, damage, redone):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    damage(run)
    assert rerun(config, run) == redone
    same_outputs(run, reference)  # redone to the very same result
    assert temporaries(run) == []


def test_changed_inputs_are_redone(config, reference, tmp_path):
    """Other tokenizer weights (a valid model directory, same provenance) change every step after it; a changed
    prior setting retrains the prior from scratch, its old checkpoints moved aside, never deleted."""
    from stage1_tokenizer.tokenizer import Tokenizer

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    import json

    provenance = json.loads((run / "tokenizer" / "config.json").read_text())["provenance"]
    model = Tokenizer.load(run / "tokenizer")
    with torch.no_grad():
        for p in model.quantizer.parameters():
            p.copy_(p.flip(0))  # the same codebook in another order: other codes for the same images
    model.save(run / "tokenizer", provenance=provenance)
    assert rerun(config, run) == {"tokenize train", "tokenize test", "prior gpt", "sample", "fid"}
    assert list((run / "prior-gpt").glob("checkpoints-stale-*"))  # the old prior's checkpoints, kept

    # (the report is redone only if the new samples differ: it depends on the sample codes, not on the prior)
    assert {"prior gpt", "sample"} <= rerun(config, run, ["prior.gpt.dropout=0.0"]) <= {"prior gpt", "sample", "fid"}
    assert len(list((run / "prior-gpt").glob("checkpoints-stale-*"))) == 2
    assert len(list((run / "prior-gpt").glob("logs-stale-*"))) == 2
    assert temporaries(run) == []
