"""``vqgen report RUN...``: one page per run (Markdown and HTML) and a comparison table across runs.

Everything is read from what the steps left in the run directory: the resolved config, the tokenizer's
eval.json (computed here when missing), the priors' config.json (test NLL), every metrics.json with FID
figures, the sample grids, and the CSV training logs (drawn as loss curves)."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any, Optional

from .core.errors import VqgenError
from .core.files import CONFIG_FILE, atomic_path, write_json, write_text
from .run_paths import GRID_FILE, RunPaths
from .training_logs import log_versions, metrics_rows


def _maybe_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def collect_run(run: Path, evaluate_tokenizer: bool = True) -> dict[str, Any]:
    """Gather a run's figures into one dict (also written as RUN/summary/summary.json)."""
    if not run.is_dir():
        raise VqgenError(f"run directory {run} does not exist")
    info: dict[str, Any] = {"run": str(run), "name": run.name, "priors": {}, "fid": []}
    paths = RunPaths(run)
    tok_config = _maybe_json(paths.tokenizer / CONFIG_FILE)
    if tok_config:
        q = tok_config.get("quantizer", {})
        info["tokenizer"] = {"arch": tok_config.get("arch"), "network": tok_config.get("network"),
                             "quantizer": q.get("name"), "quantizer_options": {k: v for k, v in q.items() if k != "name"},
                             "downsample": tok_config.get("downsample"), "image_size": tok_config.get("image_size")}
        eval_json = paths.tokenizer_eval / "eval.json"
        if not eval_json.exists() and evaluate_tokenizer:
            _evaluate(run, eval_json.parent)
        info["tokenizer_eval"] = _maybe_json(eval_json)
    for prior_dir in paths.priors():
        cfg = _maybe_json(prior_dir / CONFIG_FILE)
        if cfg:
            prior = cfg.get("prior", {})
            info["priors"][prior.get("arch", prior_dir.name)] = {
                "dir": str(prior_dir), "test_bits_per_code": cfg.get("test_bits_per_code"),
                "size": prior.get(prior.get("arch", ""), {}), "num_classes": prior.get("num_classes"),
            }
    for metrics_path in paths.metrics_files():
        metrics = _maybe_json(metrics_path)
        if metrics and "generation" in metrics:
            sampling = metrics.get("sampling", {})
            info["fid"].append({"report": str(metrics_path.parent), "arch": sampling.get("arch"),
                                "controls": sampling.get("controls"), "label": sampling.get("label"),
                                "samples_grid": str(Path(metrics["samples"]) / GRID_FILE),
                                **metrics["generation"], **{f"rec_{k}": v for k, v in metrics.get("reconstruction", {}).items()},
                                "generated_count": metrics.get("protocol", {}).get("generated_count"),
                                "protocol": metrics.get("protocol")})
    return info


def _evaluate(run: Path, out: Path) -> None:

    from stage1_tokenizer.evaluate import evaluate_tokenizer, reconstruction_grid, usage_histogram
    from stage1_tokenizer.tokenizer import Tokenizer

    from .config import load_config
    from .datasets import load_split

    paths = RunPaths(run)
    if not paths.config.exists():
        return
    cfg = load_config([paths.config])
    model = Tokenizer.load(paths.tokenizer)
    data = load_split(cfg.data, "test")
    metrics, counts = evaluate_tokenizer(model, data)
    out.mkdir(parents=True, exist_ok=True)
    reconstruction_grid(model, data, out / "reconstructions.png")
    usage_histogram(counts, out / "codebook_usage.png")
    write_json(out / "eval.json", {"tokenizer": str(paths.tokenizer), "data": f"{cfg.data.name}/test", **metrics})


def loss_curves(run: Path, path: Path) -> bool:
    """Plot every training log in the run (tokenizer and priors): training loss by step, validation by epoch."""
    logs = [step for step in sorted(run.iterdir()) if step.is_dir() and log_versions(step)]
    if not logs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(logs), figsize=(5 * len(logs), 3.2), squeeze=False)
    for ax, step in zip(axes[0], logs):
        rows = metrics_rows(step)  # a resumed run's log versions joined
        for column in ("train/loss", "val/recon_mse", "val/bits_per_code"):
            points = [(int(r["step"]), float(r[column])) for r in rows if r.get(column)]
            if points:
                ax.plot(*zip(*points), label=column, marker="o" if column.startswith("val") else None,
                        markersize=3)
        ax.set_title(step.name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def run_rows(info: dict) -> list[dict[str, str]]:
    """One comparison row per FID report in the run (or one row without FID when there is none)."""
    tok = info.get("tokenizer", {})
    ev = info.get("tokenizer_eval") or {}
    levels = ev.get("levels", {})
    base = {
        "run": info["name"],
        "tokenizer": f"{tok.get('arch', '?')}/{tok.get('quantizer', '?')} {tok.get('quantizer_options', '')}",
        "PSNR": _fmt(ev.get("psnr")), "SSIM": _fmt(ev.get("ssim")),
        "perplexity": ", ".join(f"{_fmt(v['perplexity'])}/{sum(v['codebook_sizes'])}" for v in levels.values()) or "–",
        "usage": ", ".join(_fmt(v["usage"], 3) for v in levels.values()) or "–",
    }
    rows = []
    for fid in info["fid"] or [{}]:
        arch = fid.get("arch")
        prior = info["priors"].get(arch, {}) if arch else {}
        controls = fid.get("controls") or {}
        setting = ", ".join(f"{k}={v}" for k, v in controls.items() if v not in (None,)) if controls else "–"
        rows.append({**base, "rFID": _fmt(fid.get("rec_rfid")), "prior": arch or "–",
                     "NLL (bits/code)": _fmt(prior.get("test_bits_per_code")), "sampling": setting,
                     "n": _fmt(fid.get("generated_count")), "FID": _fmt(fid.get("fid")),
                     "KID": _fmt(fid.get("kid_mean")), "precision": _fmt(fid.get("precision")),
                     "recall": _fmt(fid.get("recall"))})
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)


def html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(row[h])}</td>" for h in header) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_run_page(info: dict, out: Path) -> None:
    """RUN/summary/: index.md, index.html, summary.json and the figures they show."""
    out.mkdir(parents=True, exist_ok=True)
    run = Path(info["run"])
    evaluated = RunPaths(run).tokenizer_eval
    figures: list[tuple[str, str]] = []
    if loss_curves(run, out / "loss_curves.png"):
        figures.append(("Loss curves", "loss_curves.png"))
    for title, source in (("Reconstructions (rows: original, reconstruction)", evaluated / "reconstructions.png"),
                          ("Codebook usage", evaluated / "codebook_usage.png")):
        if source.exists():
            with atomic_path(out / source.name) as tmp:
                shutil.copyfile(source, tmp)
            figures.append((title, source.name))
    for fid in info["fid"]:
        grid = Path(fid["samples_grid"])
        if grid.exists():
            name = f"samples-{fid.get('arch') or 'prior'}.png"
            with atomic_path(out / name) as tmp:
                shutil.copyfile(grid, tmp)
            figures.append((f"Samples: {fid.get('arch')}", name))
    rows = run_rows(info)
    protocol = next((f["protocol"] for f in info["fid"] if f.get("protocol")), None)
    md = [f"# vqgen run `{info['name']}`", "", markdown_table(rows), ""]
    page = [f"<h1>vqgen run {html.escape(info['name'])}</h1>", html_table(rows)]
    if protocol:
        md += ["## FID protocol", ""] + [f"- {k}: {v}" for k, v in protocol.items()] + [""]
        page += ["<h2>FID protocol</h2><ul>"] + [f"<li>{html.escape(k)}: {html.escape(str(v))}</li>"
                                                  for k, v in protocol.items()] + ["</ul>"]
    for title, name in figures:
        md += [f"## {title}", "", f"![{title}]({name})", ""]
        page += [f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>"]
    write_text(out / "index.md", "\n".join(md))
    write_text(out / "index.html", _html_document(f"vqgen run {info['name']}", "\n".join(page)))
    write_json(out / "summary.json", info)


def write_comparison(infos: list[dict], out: Path) -> list[dict[str, str]]:
    rows = [row for info in infos for row in run_rows(info)]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.md", "# vqgen comparison\n\n" + markdown_table(rows) + "\n")
    links = "".join(f"<li><a href='{html.escape(str(Path(i['run']).resolve() / 'summary' / 'index.html'))}'>"
                    f"{html.escape(i['name'])}</a></li>" for i in infos)
    write_text(out / "comparison.html", _html_document("vqgen comparison",
                                                        f"<h1>vqgen comparison</h1>{html_table(rows)}<ul>{links}</ul>"))
    write_json(out / "comparison.json", rows)
    return rows


def _html_document(title: str, body: str) -> str:
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
