"""The Trainer's options come from a stage's ``train.trainer`` mapping, passed to Lightning as they are (the keys that
were TrainConfig fields are aliases for it); fingerprints keep their meaning and their values; the training logs
are read back across the versions a resumed run opens; the loggers by config, with epoch-end image grids."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pipeline.config import load_config
from pipeline.core.errors import VqgenError
from pipeline.core.optim import TRAINER_DEFAULTS, TrainConfig
from pipeline.steps.fingerprints import digest, model_section
from pipeline.training_logs import LoggerConfig, log_versions, metrics_rows

# Fingerprints of configs made before the trainer mapping (then typed TrainConfig fields): saved runs stay finished.
# The GPT priors' changed once since, on purpose: gpt.activation (the exact GELU) is a different model than the tanh
# GELU those runs trained, so they train again (they were 18f92e9d8960cda5, 0c2570e845e0f4b9, 71458107f68d9ac0).
SAVED_FINGERPRINTS = [
    ([], [], "db95f38f8759c806", "04334ebf9d8700af"),
    (["configs/quickstart.yaml"], [], "9837404ba5b10a2e", "b030d0c269f0e1db"),
    (["configs/experiments/mnist.yaml"], ["tokenizer.train.precision=bf16-mixed", "prior.train.gradient_clip_val=1",
                                          "prior.train.accumulate_grad_batches=2", "tokenizer.train.devices=2",
                                          "prior.train.max_steps=7"], "6a2c4c71fd10bc20", "25b15bfb59933e6b"),
]


@pytest.mark.parametrize("files, sets, tokenizer, prior", SAVED_FINGERPRINTS)
def test_fingerprints_of_unchanged_configs_do_not_change(files, sets, tokenizer, prior):
    cfg = load_config(files, sets)
    assert (digest(model_section(cfg.tokenizer)), digest(model_section(cfg.prior))) == (tokenizer, prior)


def test_a_gpt_with_the_tanh_gelu_keeps_the_fingerprint_it_had_before_the_option():
    cfg = load_config([], ["prior.gpt.activation=gelu_new"])
    assert digest(model_section(cfg.prior)) == "18f92e9d8960cda5"


def test_run_only_trainer_options_keep_the_fingerprint_and_model_ones_change_it():
    base = digest(model_section(load_config().tokenizer))
    for run_only in ("max_epochs=3", "trainer.devices=auto", "trainer.max_time=00:01:00:00", "trainer.strategy=ddp"):
        assert digest(model_section(load_config([], [f"tokenizer.train.{run_only}"]).tokenizer)) == base, run_only
    for shaping in ("precision=bf16-mixed", "trainer.limit_train_batches=0.5", "trainer.gradient_clip_val=0.5"):
        assert digest(model_section(load_config([], [f"tokenizer.train.{shaping}"]).tokenizer)) != base, shaping


def test_old_keys_are_aliases_for_the_trainer_mapping():
    assert TrainConfig().trainer == TRAINER_DEFAULTS
    assert TrainConfig(max_epochs=3, precision="bf16-mixed").trainer == {**TRAINER_DEFAULTS, "max_epochs": 3,
                                                                         "precision": "bf16-mixed"}
    assert TrainConfig(trainer={"deterministic": True}).trainer == {**TRAINER_DEFAULTS, "deterministic": True}
    assert "max_epochs" not in TrainConfig.model_fields  # one home for each option


@pytest.mark.parametrize("first, second, expected", [
    ("tokenizer.train.max_epochs=2", "tokenizer.train.trainer.max_epochs=5", 5),
    ("tokenizer.train.trainer.max_epochs=5", "tokenizer.train.max_epochs=2", 2),
])
def test_a_later_source_wins_whichever_spelling_each_used(first, second, expected):
    assert load_config([], [first, second]).tokenizer.train.trainer["max_epochs"] == expected


def test_a_saved_config_with_the_old_keys_still_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("prior:\n  train: {max_epochs: 4, accumulate_grad_batches: 2, lr: 0.002}\n")
    train = load_config([path]).prior.train
    assert train.trainer["max_epochs"] == 4 and train.trainer["accumulate_grad_batches"] == 2 and train.lr == 0.002


def test_the_mapping_goes_to_lightning_as_it_is(tmp_path):
    from pipeline.training import build_trainer

    config = TrainConfig(trainer={"limit_train_batches": 3, "max_steps": 7, "accelerator": "cpu"})
    trainer = build_trainer(config, tmp_path, "prior", LoggerConfig())
    assert (trainer.limit_train_batches, trainer.max_steps, trainer.max_epochs) == (3, 7, TRAINER_DEFAULTS["max_epochs"])


@pytest.mark.parametrize("trainer, needles", [
    ({"max_epoch": 3}, ["prior.train.trainer.max_epoch=3", "unexpected keyword argument"]),
    ({"max_epochs": -5}, ["prior.train.max_epochs=-5", "non-negative"]),
    ({"precision": "17-odd"}, ["prior.train.precision='17-odd'", "invalid"]),
    ({"logger": False}, ["prior.train.trainer.logger cannot be set", "logger.name"]),
])
def test_a_refused_option_is_named(tmp_path, trainer, needles):
    from pipeline.training import build_trainer

    with pytest.raises(VqgenError) as err:
        build_trainer(TrainConfig(trainer=trainer), tmp_path, "prior", LoggerConfig())
    assert all(needle in str(err.value) for needle in needles), str(err.value)


def test_readers_join_the_log_versions_in_order(tmp_path):
    for version in (0, 2, 10):
        (tmp_path / "logs" / f"version_{version}").mkdir(parents=True)
        (tmp_path / "logs" / f"version_{version}" / "metrics.csv").write_text(f"epoch,step\n{version},{version}\n")
    (tmp_path / "logs" / "tensorboard").mkdir()
    assert [p.name for p in log_versions(tmp_path)] == ["version_0", "version_2", "version_10"]
    assert [row["epoch"] for row in metrics_rows(tmp_path)] == ["0", "2", "10"]


def test_a_missing_optional_logger_is_a_clear_error(tmp_path, monkeypatch):
    from pipeline import training_loggers

    monkeypatch.setattr(training_loggers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VqgenError, match="uv sync --group wandb"):
        training_loggers.make_loggers(LoggerConfig(name="wandb"), tmp_path, "run")


def test_an_unknown_logger_is_a_config_error():
    with pytest.raises(VqgenError, match="logger.name"):
        load_config([], ["logger.name=mlflow"])


def test_the_csv_logger_shows_no_images(tmp_path):
    from pipeline.training import build_trainer
    from pipeline.training_loggers import EpochImages

    trainer = build_trainer(TrainConfig(), tmp_path, "prior", LoggerConfig(), preview=lambda module: None)
    assert not [c for c in trainer.callbacks if isinstance(c, EpochImages)]
    assert [type(logger).__name__ for logger in trainer.loggers] == ["CSVLogger"]


def epoch_end(logger) -> None:
    """An epoch end of a Trainer with ``logger``: the callback grids two rows of four 8x8 images."""
    from pipeline.training_loggers import EpochImages

    module = torch.nn.Linear(2, 2)
    images = lambda m: torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)  # noqa: E731
    EpochImages("tokenizer/images", images, per_row=4).on_train_epoch_end(
        SimpleNamespace(loggers=[logger], is_global_zero=True, global_step=3), module)
    assert module.training  # back in training mode


def test_tensorboard_gets_the_epoch_image_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pipeline.training_loggers import make_loggers

    csv, board = make_loggers(LoggerConfig(name="tensorboard"), tmp_path, "run")
    epoch_end(board)
    board.finalize("success")
    events = EventAccumulator(board.log_dir)
    events.Reload()
    image = events.Images("tokenizer/images")[0]
    assert (image.step, image.width, image.height) == (3, 4 * 10 + 2, 2 * 10 + 2)
    assert board.log_dir == str(tmp_path / "logs" / "tensorboard" / "version_0")


def test_wandb_is_offline_by_default_and_gets_the_grid(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from pipeline.training_loggers import make_loggers

    monkeypatch.setenv("WANDB_SILENT", "true")
    _, board = make_loggers(LoggerConfig(name="wandb"), tmp_path, "run")
    epoch_end(board)
    board.experiment.finish()
    runs = list((tmp_path / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].rglob("*.png"))


def test_the_image_data_module_loads_once_and_shuffles_by_seed_and_epoch():
    from pipeline.data_modules import ImageDataModule
    from pipeline.datasets import DataConfig

    data = ImageDataModule(DataConfig(name="digits", image_size=8), batch_size=64, seed=3)
    data.setup("fit")
    train = data.train
    data.setup("fit")  # Lightning's own call during fit finds the splits loaded
    assert data.train is train and len(data.val_dataloader().dataset) == len(data.test)
    assert data.preview(4).dtype == torch.uint8 and data.preview(4).shape[0] == 4

    def first_batch(epoch: int) -> torch.Tensor:
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[1]

    assert torch.equal(first_batch(1), first_batch(1)) and not torch.equal(first_batch(0), first_batch(1))


def test_the_code_data_module_without_a_test_split_has_no_validation(tmp_path):
    from pipeline.core.code_dataset import write_code_dataset
    from pipeline.data_modules import CodeDataModule

    meta = {"tokenizer": {"dir": "t", "weights_sha256": "a" * 64}, "dataset": {"name": "x", "split": "train"}}
    codes = torch.randint(0, 16, (10, 2, 2, 1))
    write_code_dataset(tmp_path / "train", {"codes": codes}, {"codes": {"grid": [2, 2], "codebook_sizes": [16]}},
                       None, meta)
    data = CodeDataModule(tmp_path, None, batch_size=4)
    data.setup("fit")
    assert data.test is None and data.val_dataloader() == [] and len(data.train_dataloader()) == 2


def test_the_summary_line_prefers_validation_figures_and_shows_each_level_of_a_two_level_tokenizer():
    from pipeline.training import summary_line

    def trainer(metrics):
        return SimpleNamespace(callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
                               current_epoch=3, global_step=120)

    one = summary_line("tokenizer", trainer({"val/psnr": 30.0, "val/perplexity": 200.0, "epoch/perplexity": 400.0,
                                             "val/usage": 0.5, "epoch/usage": 1.0}), 12.0)
    assert one == "tokenizer: 3 epoch(s), 120 steps in 12 s; PSNR 30.00 dB, perplexity 200.0, codebook usage 50%"
    two = summary_line("tokenizer", trainer({"val/top/perplexity": 90.0, "val/bottom/perplexity": 300.0,
                                             "epoch/top/perplexity": 500.0, "epoch/top/usage": 0.9}), 5.0)
    assert "perplexity 90.0 (top) / 300.0 (bottom)" in two
    assert "codebook usage 90% (top)" in two  # no validation usage logged: the training codes' figure
    resumed = summary_line("prior", trainer({}), 12.0, 340.0)
    assert resumed == "prior: 3 epoch(s), 120 steps in 12 s (340 s with the earlier runs it resumed)"
    assert summary_line("prior", trainer({}), 12.0, 12.2) == "prior: 3 epoch(s), 120 steps in 12 s"


def test_the_train_clock_adds_this_run_to_the_seconds_its_checkpoint_restored(monkeypatch):
    from pipeline import training_callbacks
    from pipeline.training_callbacks import TrainClock

    now = [1000.0]
    monkeypatch.setattr(training_callbacks.time, "perf_counter", lambda: now[0])
    clock = TrainClock()
    clock.load_state_dict({"seconds": 250.0})
    assert clock.seconds() == 250.0  # set-up before the first step is not counted
    clock.on_train_start(None, None)
    now[0] += 40.0
    assert clock.state_dict() == {"seconds": 290.0}
    fresh = TrainClock()
    fresh.on_train_start(None, None)
    now[0] += 5.0
    assert fresh.seconds() == 5.0
