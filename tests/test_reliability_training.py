"""Interrupted training: `vqgen tokenizer train` and `vqgen prior train` are SIGKILLed (after the first checkpoint
appears, mid-epoch, while a checkpoint or the weights are being written) or sent SIGTERM, then the same command
runs again. It resumes from checkpoints/last.ckpt, finishes, leaves no temporary file behind, and (CPU, fixed seed,
no loader workers) ends with exactly the weights of an uninterrupted run. Checkpoints are written at epoch ends, so
a kill mid-epoch costs the part of that epoch already done, never more."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from helpers_reliability import (PRIOR_TINY, STEPS_PER_EPOCH, TOKENIZER_TINY, assert_clear_error, fork_cli, invoke,
                                 kill_at_step, kill_self, load_checkpoint_safely, same_weights, sets, temporaries,
                                 vqgen_subprocess, wait_for)
from pipeline.training_logs import metrics_rows

EPOCHS = 3
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The killed children run on one thread (see fork_cli); so does everything here, so that resumed and
    uninterrupted runs do the very same floating-point work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tokenizer_args(run: Path) -> list[str]:
    return ["tokenizer", "train", "--run-dir", run, *sets(TOKENIZER_TINY)]


def prior_args(run: Path, codes: Path) -> list[str]:
    return ["prior", "train", "--run-dir", run, "--codes", codes, *sets(TOKENIZER_TINY + PRIOR_TINY)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs: a tokenizer, its codes, and a GPT prior on them."""
    run = tmp_path_factory.mktemp("reference")
    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    code, output = invoke(["tokenize", "--run-dir", run, *sets(TOKENIZER_TINY)])
    assert code == 0, output
    code, output = invoke(prior_args(run, run / "codes"))
    assert code == 0, output
    return run


def finished_cleanly(out: Path, reference_dir: Path, timed: bool = True) -> None:
    """The resumed run ended like the uninterrupted one, and left nothing half-done. ``timed``: whether the
    checkpoint it resumed kept the training clock."""
    config = json.loads((out / "config.json").read_text())
    assert config["provenance"]["steps"] == TOTAL_STEPS and config["provenance"]["epochs"] == EPOCHS
    if timed:
        assert config["provenance"]["train_seconds"] > 0
    else:  # the earlier runs' time is unknown: no figure rather than a part of one
        assert "train_seconds" not in config["provenance"]
    assert same_weights(out, reference_dir), "resumed weights differ from the uninterrupted run"
    assert temporaries(out) == []
    checkpoint = load_checkpoint_safely(out / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == TOTAL_STEPS
    # The log kept the rows of the killed attempt and appended the resumed epochs.
    epochs = {int(row["epoch"]) for row in metrics_rows(out)}
    assert epochs == set(range(EPOCHS)), epochs


# --- the tokenizer -----------------------------------------------------------------------------------------------

def test_tokenizer_killed_after_first_checkpoint_resumes_to_the_same_weights(reference, tmp_path):
    run = tmp_path / "run"
    last = run / "tokenizer" / "checkpoints" / "last.ckpt"
    code = fork_cli(tokenizer_args(run), tmp_path / "child.log", kill_when=wait_for(last))
    assert code == -signal.SIGKILL, (tmp_path / "child.log").read_text()[-2000:]
    checkpoint = load_checkpoint_safely(last)  # whole, and loadable without unpickling objects
    assert checkpoint["global_step"] % STEPS_PER_EPOCH == 0 and 0 < checkpoint["global_step"] < TOTAL_STEPS
    assert not (run / "tokenizer" / "model.safetensors").exists()
    # The training clock travels in the checkpoint: the resumed run adds its time to what this one says was spent.
    assert checkpoint["callbacks"]["TrainClock"]["seconds"] > 0
    checkpoint["callbacks"]["TrainClock"]["seconds"] = 1e6
    torch.save(checkpoint, last)

    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    finished_cleanly(run / "tokenizer", reference / "tokenizer")
    seconds = json.loads((run / "tokenizer" / "config.json").read_text())["provenance"]["train_seconds"]
    assert 1e6 < seconds < 1e6 + 600


def test_tokenizer_killed_mid_epoch_resumes_from_the_epoch_end(reference, tmp_path):
    run = tmp_path / "run"
    mid = STEPS_PER_EPOCH + 2  # the third batch of the second epoch
    code = fork_cli(tokenizer_args(run), tmp_path / "child.log", inject=kill_at_step(mid))
    assert code == -signal.SIGKILL, (tmp_path / "child.log").read_text()[-2000:]
    last = run / "tokenizer" / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint_safely(last)
    assert checkpoint["global_step"] == STEPS_PER_EPOCH  # the end of the first epoch
    del checkpoint["callbacks"]["TrainClock"]  # as checkpoints written before the clock existed
    torch.save(checkpoint, last)

    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    finished_cleanly(run / "tokenizer", reference / "tokenizer", timed=False)


def test_tokenizer_killed_while_writing_a_checkpoint(reference, tmp_path):
    """SIGKILL in the middle of writing the second checkpoint: the first stays whole at last.ckpt; the half-written
    one only ever had a temporary name, and the next run removes it."""

    def inject():
        real_save, calls = torch.save, []

        def save(obj, f, *args, **kwargs):
            calls.append(f)
            real_save(obj, f, *args, **kwargs)
            if len(calls) == 2:
                data = Path(f).read_bytes()
                Path(f).write_bytes(data[: len(data) // 2])
                kill_self()

        torch.save = save

    run = tmp_path / "run"
    code = fork_cli(tokenizer_args(run), tmp_path / "child.log", inject=inject)
    assert code == -signal.SIGKILL, (tmp_path / "child.log").read_text()[-2000:]
    ckpt_dir = run / "tokenizer" / "checkpoints"
    assert load_checkpoint_safely(ckpt_dir / "last.ckpt")["global_step"] == STEPS_PER_EPOCH
    assert [p.name.startswith(".last.ckpt.") for p in temporaries(ckpt_dir)] == [True]

    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    finished_cleanly(run / "tokenizer", reference / "tokenizer")


def test_tokenizer_killed_while_writing_its_weights(reference, tmp_path):
    """SIGKILL while model.safetensors is being written: nothing downstream can use the half file; a rerun resumes
    from the final checkpoint and writes the weights."""

    def inject():
        import pipeline.core.files as files

        real = files.save_file

        def save_file(tensors, filename, metadata=None):
            real(tensors, filename, metadata=metadata)
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[: len(data) // 3])
            kill_self()

        files.save_file = save_file

    run = tmp_path / "run"
    code = fork_cli(tokenizer_args(run), tmp_path / "child.log", inject=inject)
    assert code == -signal.SIGKILL, (tmp_path / "child.log").read_text()[-2000:]
    out = run / "tokenizer"
    assert not (out / "model.safetensors").exists() and len(temporaries(out)) == 1
    code, output = invoke(["tokenize", "--run-dir", run, *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "is not a tokenizer directory")

    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    finished_cleanly(out, reference / "tokenizer")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_tokenizer_stopped_by_a_signal_exits_cleanly_and_resumes(reference, tmp_path, sig):
    run = tmp_path / "run"
    last = run / "tokenizer" / "checkpoints" / "last.ckpt"
    log = tmp_path / "child.log"
    code = fork_cli(tokenizer_args(run), log, kill_when=wait_for(last), sig=sig)
    text = log.read_text()
    assert code == 130, text[-2000:]
    assert "run the same command again" in text and "Traceback" not in text
    load_checkpoint_safely(last)
    assert temporaries(run) == []

    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    finished_cleanly(run / "tokenizer", reference / "tokenizer")


# --- the prior -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["after_first_checkpoint", "mid_epoch"])
def test_prior_killed_resumes_to_the_same_weights(reference, tmp_path, where):
    """The GPT prior draws dropout masks and label drops: equal weights also show that the random generators'
    states and the shuffle order are restored on resume."""
    run = tmp_path / "run"
    last = run / "prior-gpt" / "checkpoints" / "last.ckpt"
    args = prior_args(run, reference / "codes")
    if where == "mid_epoch":
        code = fork_cli(args, tmp_path / "child.log", inject=kill_at_step(2 * STEPS_PER_EPOCH + 1))
    else:
        code = fork_cli(args, tmp_path / "child.log", kill_when=wait_for(last))
    assert code == -signal.SIGKILL, (tmp_path / "child.log").read_text()[-2000:]
    step = load_checkpoint_safely(last)["global_step"]
    assert step % STEPS_PER_EPOCH == 0 and 0 < step < TOTAL_STEPS

    code, output = invoke(args)
    assert code == 0, output
    config = json.loads((run / "prior-gpt" / "config.json").read_text())
    assert config["provenance"]["steps"] == TOTAL_STEPS
    assert same_weights(run / "prior-gpt", reference / "prior-gpt")
    assert temporaries(run) == []


def test_finished_training_rerun_changes_nothing(reference, tmp_path):
    """Running a finished training again resumes at its end: no step is trained twice, same weights."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference / "tokenizer", run / "tokenizer")
    code, output = invoke(tokenizer_args(run))
    assert code == 0, output
    assert same_weights(run / "tokenizer", reference / "tokenizer")
    assert load_checkpoint_safely(run / "tokenizer" / "checkpoints" / "last.ckpt")["global_step"] == TOTAL_STEPS


# --- the real executable (slow: a fresh interpreter imports torch and Lightning) -----------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("stage", ["tokenizer", "prior"])
def test_real_vqgen_process_killed_and_rerun(reference, tmp_path, stage):
    import time

    run = tmp_path / "run"
    args = tokenizer_args(run) if stage == "tokenizer" else prior_args(run, reference / "codes")
    out = run / ("tokenizer" if stage == "tokenizer" else "prior-gpt")
    process = vqgen_subprocess(args, tmp_path / "first.log")
    deadline = time.monotonic() + 600
    while not (out / "checkpoints" / "last.ckpt").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    load_checkpoint_safely(out / "checkpoints" / "last.ckpt")

    second = vqgen_subprocess(args, tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    assert same_weights(out, reference / out.name)
    assert temporaries(run) == []


def test_log_damaged_by_a_kill_mid_write_is_read_with_the_resumed_run(tmp_path):
    """A signal while Lightning rewrote metrics.csv (for a new column) left rows longer than its header; resuming
    crashed on it. The resumed run writes the next log version and never touches the damaged one; the readers keep
    what parses of it, then the new rows."""
    from pipeline.training_loggers import make_loggers
    from pipeline.training_logs import LoggerConfig

    damaged = tmp_path / "logs" / "version_0" / "metrics.csv"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("a,step\n1,0\n2,1,9,9\n")
    logger = make_loggers(LoggerConfig(), tmp_path, "run")[0]
    logger.log_metrics({"b": 3.0}, step=2)
    logger.save()
    assert logger.version == 1
    assert metrics_rows(tmp_path) == [{"a": "1", "step": "0"}, {"a": "2", "step": "1"}, {"b": "3.0", "step": "2"}]
    assert damaged.read_text() == "a,step\n1,0\n2,1,9,9\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]
