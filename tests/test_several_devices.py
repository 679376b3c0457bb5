"""Training on several devices and nodes: the Trainer options come from the config (or --devices, --num-nodes,
--strategy) as Lightning takes them, and Lightning's refusals name the key."""

from __future__ import annotations

from lightning.pytorch.strategies import DDPStrategy

from helpers_reliability import assert_clear_error, invoke
from pipeline.config import load_config
from pipeline.training import build_trainer


def test_strategy_nodes_and_devices_reach_lightning(tmp_path):
    cfg = load_config([], ["prior.train.trainer.strategy=ddp", "prior.train.num_nodes=2", "prior.train.devices=2",
                           "prior.train.accelerator=cpu"])
    trainer = build_trainer(cfg.prior.train, tmp_path, "prior", cfg.logger)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 2, 4)


def test_a_strategy_lightning_refuses_is_named(tmp_path):
    code, output = invoke(["tokenizer", "train", "--run-dir", tmp_path / "run", "--strategy", "fsdp",
                           "--accelerator", "cpu", "--max-steps", "1"])
    assert_clear_error(code, output, "tokenizer.train.trainer.strategy='fsdp'", "requires a GPU")
