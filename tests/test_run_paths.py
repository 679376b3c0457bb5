"""The names inside a run directory. Runs saved by earlier versions must keep loading, so these are fixed."""

from pathlib import Path

from pipeline.run_paths import GRID_FILE, METRICS_FILE, PNG_DIR, RESOLVED_CONFIG, RunPaths


def test_the_run_directory_layout_is_fixed(tmp_path):
    paths = RunPaths(tmp_path)
    assert paths.config == tmp_path / "config.yaml" and RESOLVED_CONFIG == "config.yaml"
    assert paths.tokenizer == tmp_path / "tokenizer" and paths.tokenizer_eval == tmp_path / "tokenizer" / "eval"
    assert paths.codes("train") == tmp_path / "codes" / "train" and paths.codes_root == tmp_path / "codes"
    assert paths.prior("gpt") == tmp_path / "prior-gpt" and paths.samples("gpt") == tmp_path / "samples-gpt"
    assert paths.report == tmp_path / "report" and paths.arch_report("gpt") == tmp_path / "report-gpt"
    assert paths.summary == tmp_path / "summary"
    assert (METRICS_FILE, GRID_FILE, PNG_DIR) == ("metrics.json", "grid.png", "png")


def test_listings_find_what_the_steps_wrote(tmp_path):
    paths = RunPaths(tmp_path)
    for arch in ("pixelcnn", "gpt"):
        paths.prior(arch).mkdir()
        (paths.samples(arch) / PNG_DIR).mkdir(parents=True)
    (tmp_path / "samples-empty").mkdir()  # no png/: not a sample set
    for report in (paths.report, paths.arch_report("gpt")):
        report.mkdir()
        (report / METRICS_FILE).write_text("{}")
    assert [p.name for p in paths.priors()] == ["prior-gpt", "prior-pixelcnn"]
    assert [p.name for p in paths.sample_sets()] == ["samples-gpt", "samples-pixelcnn"]
    assert [Path(p).parent.name for p in paths.metrics_files()] == ["report", "report-gpt"]


def test_sweeps_and_a_tokenizer_from_elsewhere(tmp_path):
    paths = RunPaths(tmp_path / "run", tokenizer=tmp_path / "other" / "tokenizer")
    assert paths.tokenizer == tmp_path / "other" / "tokenizer" and paths.codes_root == tmp_path / "run" / "codes"
    assert paths.samples("maskgit", "cfg2-steps12-ct4.5") == tmp_path / "run" / "samples-maskgit-cfg2-steps12-ct4.5"
    assert paths.arch_report("gpt", "cfg0") == tmp_path / "run" / "report-gpt-cfg0"
    assert paths.real_report == tmp_path / "run" / "report-real"
