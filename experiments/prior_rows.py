"""The stage-2 table's parts: the sample sets swept per prior (``Setting``), the rows their reports become, the
floor rows (real data, reconstructions), the merge key and order of ``results/mnist/priors.json``, and its
Markdown form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from results_table import command_line, machine_label

# The issue's columns, in its order; every row has each of them (None where it does not apply).
ISSUE_KEYS = ("tokenizer", "prior", "conditional", "cfg_scale", "n_samples", "fid", "kid", "precision", "recall",
              "nll_bits", "sample_seconds", "command")
FLOOR = ("real data", "reconstruction")
MASKGIT_CONTROLS = ("steps", "schedule", "choice_temperature")


@dataclass(frozen=True)
class Setting:
    """One sample set of a prior: its guidance scale and, for MaskGIT, its decoding steps and choice temperature."""

    cfg_scale: float
    steps: Optional[int] = None
    choice_temperature: Optional[float] = None

    @property
    def name(self) -> str:
        """The sample set's name in the run directory (samples-ARCH-NAME, report-ARCH-NAME)."""
        text = f"cfg{self.cfg_scale:g}"
        return text if self.steps is None else f"{text}-steps{self.steps}-ct{self.choice_temperature:g}"

    def overrides(self) -> list[str]:
        # Scale 0 runs the null class alone (see stage2_prior.sampling.Guidance): no labels, and the meta says so.
        out = [f"sample.cfg_scale={self.cfg_scale}", f"sample.label={'null' if self.cfg_scale == 0 else 'all'}"]
        if self.steps is not None:
            out += [f"sample.steps={self.steps}", f"sample.choice_temperature={self.choice_temperature}"]
        return out


def settings_for(arch: str, conditional: bool, scales: list[float], steps: list[int], temperatures: list[float],
                 sweep_scale: Optional[float]) -> list[Setting]:
    """Every scale; MaskGIT at every (steps, choice temperature) too: at every scale, or with ``sweep_scale``
    only at that scale (the other scales then take the first steps and temperature)."""
    if not conditional:  # a prior trained without labels has one way to sample: unconditionally
        scales, sweep_scale = [0.0], None
    if arch != "maskgit":
        return [Setting(scale) for scale in scales]
    if sweep_scale is None:
        return [Setting(scale, n, t) for scale in scales for n in steps for t in temperatures]
    chosen = [Setting(scale, steps[0], temperatures[0]) for scale in scales]
    chosen += [Setting(sweep_scale, n, t) for n in steps for t in temperatures]
    return list(dict.fromkeys(chosen))  # in order, once each


def best_epoch(prior_dir: Path) -> Optional[int]:
    """The epoch (from 1) whose end measured the lowest test-split bits per code, from the training log (an epoch
    measured twice by a resumed run: its last value). Equal to ``epochs``: the NLL was still improving."""
    from pipeline.training_logs import metrics_rows

    by_epoch: dict[int, float] = {}
    for entry in metrics_rows(prior_dir):  # every log version of a resumed run, in order
        if entry.get("val/bits_per_code"):
            by_epoch[int(entry["epoch"])] = float(entry["val/bits_per_code"])
    return min(by_epoch, key=by_epoch.get) + 1 if by_epoch else None


def prior_facts(prior, provenance: dict, prior_dir: Path, train_seconds: Optional[float]) -> dict:
    """What every row of one trained prior says about it."""
    config = prior.config
    trained = provenance.get("provenance", {})
    nll = provenance.get("test_bits_per_code")
    return {"nll_bits": None if nll is None else round(nll, 4),
            "nll_kind": "masked-token loss, not a likelihood" if config.arch == "maskgit" else "exact",
            "trained_with_labels": config.num_classes > 0,
            "label_dropout": config.label_dropout if config.num_classes else None,
            "model": getattr(config, config.arch).model_dump(), "epochs": trained.get("epochs"),
            "train_steps": trained.get("steps"), "nll_best_epoch": best_epoch(prior_dir),
            "train_seconds": trained.get("train_seconds", train_seconds)}  # the checkpoints' clock: every resumed run


def sample_row(tokenizer: str, arch: str, setting: Setting, facts: dict, metrics: dict, fid_path: str) -> dict:
    """A generator's row: one prior sampled with one setting and scored against the reference."""
    generation, sampling = metrics["generation"], metrics["sampling"]
    controls = sampling["controls"]
    kept = ("temperature", "top_k", "top_p", *(MASKGIT_CONTROLS if arch == "maskgit" else ()))
    conditional = facts["trained_with_labels"] and setting.cfg_scale > 0  # scale 0: the null class alone
    row = {"tokenizer": tokenizer, "prior": arch, "conditional": conditional, "cfg_scale": setting.cfg_scale,
           "n_samples": metrics["protocol"]["generated_count"], **_scores(generation), "nll_bits": facts["nll_bits"],
           "sample_seconds": sampling.get("seconds"), "sampling": {key: controls[key] for key in kept},
           "sample_device": sampling.get("device"), **{k: v for k, v in facts.items() if k != "nll_bits"}}
    return _finish(row, metrics, fid_path)


def floor_rows(tokenizer: str, metrics: dict, fid_path: str) -> list[dict]:
    """Real train images against the reference, and the tokenizer's reconstructions of it (rFID)."""
    protocol = metrics["protocol"]
    real = {"tokenizer": None, "prior": "real data", "n_samples": protocol["generated_count"],
            **_scores(metrics["generation"]), "images": protocol["generated"]}
    reconstruction = metrics["reconstruction"]
    recon = {"tokenizer": tokenizer, "prior": "reconstruction", "n_samples": protocol["reconstruction_count"],
             "fid": round(reconstruction["rfid"], 4), "psnr": round(reconstruction["psnr"], 3)}
    return [_finish(row, metrics, fid_path) for row in (real, recon)]


def _scores(generation: dict) -> dict:
    pick = {"fid": "fid", "kid": "kid_mean", "precision": "precision", "recall": "recall"}
    return {key: None if generation.get(name) is None else round(generation[name], 5) for key, name in pick.items()}


def _finish(row: dict, metrics: dict, fid_path: str) -> dict:
    """Every issue key present (in its order), then the extras; the command comes last."""
    extras = {key: value for key, value in row.items() if key not in ISSUE_KEYS and value is not None}
    return {**{key: row.get(key) for key in ISSUE_KEYS[:-1]}, **extras, "fid_path": fid_path,
            "reference": metrics["protocol"]["reference"], "machine": machine_label(), "command": command_line()}


def row_key(row: dict) -> tuple:
    """Rows with the same key replace each other when merged: same tokenizer, prior, setting, count, FID path."""
    return (row["tokenizer"], row["prior"], row.get("trained_with_labels"), row["cfg_scale"],
            json.dumps(row.get("sampling"), sort_keys=True), row["n_samples"], row.get("fid_path"))


def row_order(row: dict) -> tuple:
    rank = FLOOR.index(row["prior"]) if row["prior"] in FLOOR else len(FLOOR)
    sampling = row.get("sampling") or {}
    return (rank, row["prior"], row["tokenizer"] or "", not row.get("trained_with_labels"), row["cfg_scale"] or 0,
            sampling.get("steps") or 0, sampling.get("choice_temperature") or 0, row["n_samples"],
            row.get("fid_path") or "")


def best_rows(table: list[dict]) -> dict[str, dict]:
    """The lowest-FID row of each prior."""
    best: dict[str, dict] = {}
    for row in table:
        if row["prior"] not in FLOOR and row["fid"] is not None and (
                row["prior"] not in best or row["fid"] < best[row["prior"]]["fid"]):
            best[row["prior"]] = row
    return best


def markdown(table: list[dict]) -> str:
    fmt = lambda value, spec="": "-" if value is None else format(value, spec)  # noqa: E731
    lines = ["| tokenizer | prior | conditional | cfg | MaskGIT steps / choice T | n | FID | KID | precision | "
             "recall | NLL (bits/code) | s to sample n | train s | epochs | FID path |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        sampling = row.get("sampling") or {}
        maskgit = f"{sampling['steps']} / {sampling['choice_temperature']:g}" if "steps" in sampling else "-"
        prior = row["prior"] + (" (no labels)" if row.get("trained_with_labels") is False else "")
        lines.append(f"| {fmt(row['tokenizer'])} | {prior} | {fmt(row['conditional'])} | "
                     f"{fmt(row['cfg_scale'], 'g')} | {maskgit} | {row['n_samples']} | {fmt(row['fid'], '.2f')} | "
                     f"{fmt(row['kid'], '.4f')} | {fmt(row['precision'], '.3f')} | {fmt(row['recall'], '.3f')} | "
                     f"{fmt(row['nll_bits'], '.3f')} | {fmt(row['sample_seconds'], '.1f')} | "
                     f"{fmt(row.get('train_seconds'), '.0f')} | {fmt(row.get('epochs'))} | {row.get('fid_path')} |")
    return "\n".join(lines) + "\n"
