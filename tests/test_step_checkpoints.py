"""Checkpoints every N optimizer steps (``--checkpoint-every``): a run killed mid-epoch resumes from the last such
checkpoint at the very batch it had reached (the shuffle skips the batches done) and ends with the weights of an
uninterrupted run, having lost at most N steps."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from helpers_reliability import (PRIOR_TINY, STEPS_PER_EPOCH, TOKENIZER_TINY, assert_clear_error, fork_cli, invoke,
                                 kill_at_step, load_checkpoint_safely, same_weights, sets)

EVERY = 2
KILL_AT = STEPS_PER_EPOCH + 4  # the fifth of five batches of the second epoch: the last checkpoint is mid-epoch
TOTAL_STEPS = 3 * STEPS_PER_EPOCH
# VQGAN training: manual optimization of a discriminator (started mid-run) beside an EMA copy of the tokenizer.
ADVERSARIAL = ["tokenizer.loss.adversarial_weight=0.5", "tokenizer.loss.disc_start_steps=3",
               "tokenizer.loss.disc_layers=2", "tokenizer.loss.disc_channels=8", "tokenizer.loss.lecam_weight=0.1",
               "tokenizer.loss.ema_decay=0.9"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tokenizer_args(run: Path, *extra: str) -> list[str]:
    return ["tokenizer", "train", "--run-dir", run, *sets(TOKENIZER_TINY), *extra]


def prior_args(run: Path, codes: Path, *extra: str) -> list[str]:
    return ["prior", "train", "--run-dir", run, "--codes", codes, *sets(TOKENIZER_TINY + PRIOR_TINY), *extra]


@pytest.fixture(scope="module")
def reference(one_torch_thread, tmp_path_factory):
    """Uninterrupted runs without step checkpoints: a tokenizer, its codes, a GPT prior."""
    run = tmp_path_factory.mktemp("reference")
    for args in (tokenizer_args(run), ["tokenize", "--run-dir", run, *sets(TOKENIZER_TINY)],
                 prior_args(run, run / "codes")):
        code, output = invoke(args)
        assert code == 0, output
    return run


def killed_then_resumed(args: list[str], out: Path, tmp_path: Path) -> int:
    """Kill ``args`` at KILL_AT, check what the kill left, rerun; returns the step the run resumed from."""
    code = fork_cli(args, tmp_path / "child.log", inject=kill_at_step(KILL_AT))
    assert code == -signal.SIGKILL, (tmp_path / "child.log").read_text()[-2000:]
    resumed_from = load_checkpoint_safely(out / "checkpoints" / "last.ckpt")["global_step"]
    assert resumed_from % STEPS_PER_EPOCH != 0, "the last checkpoint should be a mid-epoch one"
    assert KILL_AT - EVERY <= resumed_from < KILL_AT  # lost at most EVERY steps
    code, output = invoke(args)
    assert code == 0, output
    assert json.loads((out / "config.json").read_text())["provenance"]["steps"] == TOTAL_STEPS
    return resumed_from


def test_tokenizer_killed_mid_epoch_resumes_at_the_batch_it_reached(reference, tmp_path):
    run = tmp_path / "run"
    killed_then_resumed(tokenizer_args(run, "--checkpoint-every", str(EVERY)), run / "tokenizer", tmp_path)
    assert same_weights(run / "tokenizer", reference / "tokenizer")


def test_adversarial_tokenizer_killed_mid_epoch_resumes_at_the_batch_it_reached(tmp_path):
    """Two optimizers stepped by hand, the discriminator's outside Lightning's step count, and the EMA weights
    (what is saved) all come back from a mid-epoch checkpoint."""
    straight, run = tmp_path / "straight", tmp_path / "run"
    code, output = invoke(tokenizer_args(straight, *sets(ADVERSARIAL)))
    assert code == 0, output
    killed_then_resumed(tokenizer_args(run, *sets(ADVERSARIAL), "--checkpoint-every", str(EVERY)),
                        run / "tokenizer", tmp_path)
    assert same_weights(run / "tokenizer", straight / "tokenizer")


def test_prior_killed_mid_epoch_resumes_at_the_batch_it_reached(reference, tmp_path):
    """The GPT prior draws dropout masks and label drops: equal weights also show the random states travel."""
    run = tmp_path / "run"
    args = prior_args(run, reference / "codes", "--checkpoint-every", str(EVERY))
    killed_then_resumed(args, run / "prior-gpt", tmp_path)
    assert same_weights(run / "prior-gpt", reference / "prior-gpt")


def test_checkpoint_every_must_be_positive(tmp_path):
    code, output = invoke(tokenizer_args(tmp_path / "run", "--checkpoint-every", "0"))
    assert_clear_error(code, output, "tokenizer.train.checkpoint_every_steps")


def test_samplers_start_a_resumed_epoch_late_and_only_that_one():
    from torch.utils.data import DistributedSampler

    from pipeline.epoch_samplers import EpochDistributedSampler, EpochRandomSampler

    data = list(range(50))
    whole = list(EpochRandomSampler(data, seed=3, epoch=2))
    late = EpochRandomSampler(data, seed=3, epoch=2, skip=20)
    late.set_epoch(2)  # Lightning sets the epoch it resumes in: still late
    assert list(late) == whole[20:]
    assert list(late) == whole  # the next pass over the same epoch is whole again
    moved_on = EpochRandomSampler(data, seed=3, epoch=2, skip=20)
    moved_on.set_epoch(3)
    assert list(moved_on) == list(EpochRandomSampler(data, seed=3, epoch=3))

    lightning_own = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=3)
    lightning_own.set_epoch(2)
    ours = EpochDistributedSampler(data, num_replicas=2, rank=1, seed=3, epoch=2, skip=10)
    ours.set_epoch(2)
    assert list(ours) == list(lightning_own)[10:]


def test_vqgen_run_checks_checkpoint_every_before_any_work(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n")
    code, output = invoke(["run", config, "--checkpoint-every", "-3"])
    assert_clear_error(code, output, "checkpoint_every_steps")
    assert not (tmp_path / "run").exists()


def test_checkpoint_every_leaves_the_fingerprint_alone():
    from pipeline.config import load_config
    from pipeline.steps.tokenizer import fingerprint

    assert fingerprint(load_config([], ["tokenizer.train.checkpoint_every_steps=100"])) == fingerprint(
        load_config([], []))
