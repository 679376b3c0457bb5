"""Codebook state that depends on data stays identical across DDP processes.

Two CPU processes (gloo, rendezvous through a file in tmp_path) train quantizers on different data: EMA
statistics, k-means init and dead-code restarts must leave the same codebook on both, and the per-epoch
usage statistics must agree. A plain EMA codebook on two processes must equal one process on both halves.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stage1_tokenizer.quantizers import build_quantizer

WORLD = 2
STEPS = 4
UPKEEP = {"kmeans_init": True, "kmeans_iters": 5, "restart": True, "dead_code_threshold": 3.0, "usage_decay": 0.5}
QUANTIZERS = {  # built in this order after the same seed, so every process starts from the same weights
    "ema-plain": ("ema", {"codebook_size": 8, "decay": 0.8}),
    "ema": ("ema", {"codebook_size": 8, **UPKEEP}),
    "vq": ("vq", {"codebook_size": 8, **UPKEEP}),
    "pq-ema": ("pq", {"codebook_size": 8, "groups": 2, "ema": True, **UPKEEP}),
    "rvq-ema": ("rvq", {"codebook_size": 8, "depth": 2, "ema": True, "quantizer_dropout": 0.5, **UPKEEP}),
    "soft": ("soft", {"codebook_size": 8}),  # k-means init of the first batch, which differs per process
}


def rank_batches(rank: int) -> list[torch.Tensor]:
    """Each process sees its own data: a different seed and a different mean."""
    g = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(2, 4, 3, 3, generator=g) + 2.0 * rank for _ in range(STEPS)]


def build_all() -> dict:
    torch.manual_seed(0)
    return {key: build_quantizer(name, 4, options).train() for key, (name, options) in QUANTIZERS.items()}


def train(quantizers: dict, batches: list[torch.Tensor]) -> dict:
    restarts = {key: 0.0 for key in quantizers}
    for z in batches:
        for key, quantizer in quantizers.items():
            restarts[key] += quantizer(z).stats.get("restarted_codes", torch.tensor(0.0)).item()
    return {
        "state": {key: {k: v.detach().clone() for k, v in q.state_dict().items()} for key, q in quantizers.items()},
        "epoch": {key: q.epoch_stats() for key, q in quantizers.items()},
        "restarts": restarts,
    }


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(1 + rank)  # different random streams: agreement must come from the collectives
        result = train(build_all(), rank_batches(rank))
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_codebooks_and_epoch_stats_agree_across_processes(tmp_path):
    # fork: the children inherit the imported torch instead of importing it again (seconds each on a small CPU).
    mp.start_processes(worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="fork")
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]

    for key in QUANTIZERS:
        states = [result["state"][key] for result in results]
        for name, tensor in states[0].items():
            assert torch.equal(tensor, states[1][name]), f"{key}: {name} differs between processes"
        assert results[0]["epoch"][key] == results[1]["epoch"][key], key
    for key in ("ema", "vq", "pq-ema", "rvq-ema"):
        assert results[0]["restarts"][key] > 0, f"{key}: no restart happened, so the test proves nothing"
        assert all(bool(t) for name, t in results[0]["state"][key].items() if name.endswith("initialized"))

    # A codebook with no random choices: two processes on their halves equal one process on both.
    single = build_all()["ema-plain"]
    together = [torch.cat([a, b]) for a, b in zip(rank_batches(0), rank_batches(1))]
    for z in together:
        single(z)
    assert torch.allclose(single.codebook.weight, results[0]["state"]["ema-plain"]["codebook.weight"], atol=1e-5)
    assert single.epoch_stats() == results[0]["epoch"]["ema-plain"]
