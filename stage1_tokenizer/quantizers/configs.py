"""The config model of every built-in quantizer, in one module that imports no torch.

A config file is checked against these models before torch loads (a wrong option answers in a moment, not after
seconds of imports), so they live here rather than beside their quantizers; each quantizer module imports its own.
The value checks that need no tensor sizes are validators here; those that do (an embedding dimension that the
groups divide) stay in the quantizer's constructor.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from .options import QuantizerOptions

SCHEDULES = ("exp", "linear", "cosine")


def check_schedule(kind: str, start: float, end: float, steps: int, fraction: float = 1.0) -> None:
    if kind not in SCHEDULES:
        raise ValueError(f"quantizer.schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    if start <= 0 or end <= 0:
        raise ValueError(f"quantizer temperatures must be positive, got start={start}, end={end}")
    if steps < 0:
        raise ValueError(f"quantizer.anneal_steps must be non-negative, got {steps}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"quantizer.anneal_fraction must be in (0, 1], got {fraction}")


def check_upkeep(kmeans_init: bool, kmeans_iters: int, dead_code_threshold: float, usage_decay: float) -> None:
    """The k-means init and dead-code restart options that ``Codebook`` and ``soft`` share."""
    if kmeans_iters < 1 and kmeans_init:
        raise ValueError(f"quantizer.kmeans_iters must be at least 1 with kmeans_init, got {kmeans_iters}")
    if dead_code_threshold < 0:
        raise ValueError(f"quantizer.dead_code_threshold must be non-negative, got {dead_code_threshold}")
    if not 0.0 <= usage_decay < 1.0:
        raise ValueError(f"quantizer.usage_decay must be in [0, 1), got {usage_decay}")


class CodebookOptions(QuantizerOptions):
    """Options shared by every quantizer built on :class:`Codebook` (its config model inherits them)."""

    ema: bool = False  # learn codes as EMAs of their assigned encoder outputs instead of by gradient
    decay: float = 0.99  # EMA decay of the per-code counts and sums (with ema)
    eps: float = 1e-5  # Laplace smoothing of the EMA counts (with ema)
    kmeans_init: bool = False  # replace the random init by k-means on the first training batch
    kmeans_iters: int = 10  # Lloyd iterations of that init
    restart: bool = False  # move dead codes onto random encoder outputs of the current batch
    dead_code_threshold: float = 1.0  # dead: EMA of assignments per training step (all processes) below this
    # Decay of that usage EMA. A code that stops being used falls from the uniform share u = N/K to the threshold
    # t in ln(u / t) / ln(1 / decay) steps: 27 at 0.9 for MNIST's 8192 vectors a batch and K=512 (0.99 took 276,
    # by which time plain VQ had collapsed). Lower decays also restart codes that are merely rare.
    usage_decay: float = 0.9
    # > 0: add entropy_weight * (E[H(p(.|z))] - H(E[p(.|z)])) to the loss, p(k|z) = softmax(-||z - e_k||^2 / (T s))
    # with s the batch's mean squared distance to the nearest code: positions commit to one code while the batch
    # spreads over all of them (the usage entropy that LFQ has, for looked-up codebooks). 0 = off, the paper's VQ.
    entropy_weight: float = 0.0
    # T, in units of s. MNIST, one epoch: T = 0.1 with weight 0.05 gave perplexity 478.5 (plain vq 330.9); at T = 1
    # the soft assignment spreads over many codes and the term mostly blurs (weight 0.02: 395.1, -1.1 dB).
    entropy_temperature: float = 0.1

    @model_validator(mode="after")
    def _check_upkeep(self):
        check_upkeep(self.kmeans_init, self.kmeans_iters, self.dead_code_threshold, self.usage_decay)
        if self.entropy_weight < 0 or self.entropy_temperature <= 0:
            raise ValueError(f"quantizer.entropy_weight must be non-negative and quantizer.entropy_temperature "
                             f"positive, got {self.entropy_weight} and {self.entropy_temperature}")
        if self.ema and not 0.0 <= self.decay < 1.0:
            raise ValueError(f"quantizer.decay must be in [0, 1), got {self.decay}")
        if self.eps <= 0:
            raise ValueError(f"quantizer.eps must be positive, got {self.eps}")
        return self


class VQConfig(CodebookOptions):
    name: Literal["vq"] = "vq"
    codebook_size: int = 512
    beta: float = 0.25  # commitment weight, applied to the encoder term ||z_e - sg[e]||^2
    cosine: bool = False  # compare directions: l2-normalised inputs and codes
    codebook_dim: int = 0  # > 0: project to this many dimensions for the lookup and back; 0 = look up in place
    rotation_trick: bool = False  # rotation-trick gradient (Fifty et al. 2024) instead of straight-through


class EMAConfig(VQConfig):
    name: Literal["ema"] = "ema"
    ema: Literal[True] = True  # the preset's point; plain vq is name: vq


class AnnealedTemperature(QuantizerOptions):
    """A temperature annealed from ``tau_start`` to ``tau_end`` over a share of the run (``gumbel``, ``sq``)."""

    tau_start: float = 1.0
    tau_end: float = 0.1
    anneal_fraction: float = 1.0  # share of the run from tau_start to tau_end
    anneal_steps: int = 0  # > 0: that many training steps instead of anneal_fraction
    schedule: str = "exp"  # exp | linear | cosine

    @model_validator(mode="after")
    def _check_schedule(self):
        check_schedule(self.schedule, self.tau_start, self.tau_end, self.anneal_steps, self.anneal_fraction)
        return self


class GumbelConfig(AnnealedTemperature):
    name: Literal["gumbel"] = "gumbel"
    codebook_size: int = 512
    hard: bool = False  # one-hot forward with the relaxed gradient (straight-through Gumbel) instead of the soft mix
    tau_end: float = 0.0625  # 1/16, DALL-E's final temperature
    anneal_fraction: float = 0.8
    kl_weight: float = 0.05  # final weight of KL(softmax(logits) || uniform), averaged over positions
    kl_ramp_fraction: float = 0.1  # share of the run over which the KL weight rises from 0 (cosine)


class FSQConfig(QuantizerOptions):
    name: Literal["fsq"] = "fsq"
    levels: list[int] = [8, 5, 5, 5]  # integers per channel; the codebook has prod(levels) codes
    eps: float = 1e-3  # keeps the bound just outside the outermost integers so they are reached


class LFQConfig(QuantizerOptions):
    name: Literal["lfq"] = "lfq"
    bits: int = 10  # the codebook has 2^bits codes
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1  # overall weight of the entropy penalty
    sample_entropy_weight: float = 1.0  # per-position entropy (minimised)
    codebook_entropy_weight: float = 1.0  # entropy of the batch-mean distribution (maximised)
    # T in softmax(-||x - c||^2 / T). Per bit the logit is 4 x_i / T: at T = 0.01 a bit whose sign settles is
    # saturated, the batch-entropy term sends it no gradient and it stays dead (MNIST, one epoch: 6% usage,
    # perplexity 32); at T = 1 every bit keeps a gradient (100% usage, perplexity 308).
    entropy_temperature: float = 1.0


class RVQConfig(CodebookOptions):
    name: Literal["rvq"] = "rvq"
    codebook_size: int = 512  # per level
    depth: int = 4  # levels, i.e. code channels
    beta: float = 0.25  # commitment weight on the encoder term of every level
    quantizer_dropout: float = 0.0  # training: probability that an image uses a random prefix of the levels


class PQConfig(CodebookOptions):
    name: Literal["pq"] = "pq"
    codebook_size: int = 512  # per group
    groups: int = 2  # code channels; must divide the embedding dimension
    beta: float = 0.25  # commitment weight on the encoder term


class SQConfig(AnnealedTemperature):
    name: Literal["sq"] = "sq"
    codebook_size: int = 512
    init_variance: float = 10.0  # initial exp(param) of s^2 = floor + exp(param); the authors' start for 64-d codes
    variance_floor: float = 1.0  # the authors' gaussian_1: s^2 = exp(0) + exp(param)
    # tau: the Gumbel-softmax temperature of the stochastic assignment, annealed over the whole run
    tau_end: float = 0.15  # where the authors' exp(-1e-5 step) decay stands after their 100 epochs
    loss_weight: float = 1.0  # multiplies the latent KL (1 = the ELBO)


class SoftConfig(QuantizerOptions):
    name: Literal["soft"] = "soft"
    codebook_size: int = 512
    temperature: float = 1.0  # of softmax(-||z - e||^2 / (temperature * s)), at the first training step
    temperature_end: float = 0.01  # reached after anneal_fraction of the run and kept
    anneal_fraction: float = 0.5  # share of the run from temperature to temperature_end
    anneal_steps: int = 0  # > 0: that many training steps instead of anneal_fraction
    schedule: str = "exp"  # exp | linear | cosine
    beta: float = 0.25  # commitment weight on the encoder term ||z - sg[e_nearest]||^2
    # The temperature in units of the batch's mean squared distance to the nearest code, so it means the same
    # whatever the encoder's scale (an absolute 1.0 mixed all 512 codes almost evenly: 24% usage at one epoch).
    relative_temperature: bool = True
    kmeans_init: bool = True  # codes start as k-means centroids of the first training batch
    kmeans_iters: int = 10
    # Dead-code restarts as in vq: without them a third of the codes were dead after one MNIST epoch.
    restart: bool = True
    dead_code_threshold: float = 1.0
    usage_decay: float = 0.9

    @model_validator(mode="after")
    def _check_schedule(self):
        check_schedule(self.schedule, self.temperature, self.temperature_end, self.anneal_steps,
                       self.anneal_fraction)
        check_upkeep(self.kmeans_init, self.kmeans_iters, self.dead_code_threshold, self.usage_decay)
        return self


BUILTIN_CONFIGS = (VQConfig, EMAConfig, GumbelConfig, FSQConfig, LFQConfig, RVQConfig, PQConfig, SQConfig, SoftConfig)
