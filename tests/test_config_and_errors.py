"""Config validation and the CLI's clear errors (no traceback, exit code 2, the message names what to fix)."""

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_config
from pipeline.core.errors import VqgenError

runner = CliRunner()


def test_wrong_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prior:\n  gpt:\n    n_layers: 4\n")
    with pytest.raises(VqgenError) as err:
        load_config([bad])
    assert "prior.gpt.n_layers" in str(err.value) and str(bad) in str(err.value)


def test_wrong_type_names_key_and_source(tmp_path):
    with pytest.raises(VqgenError) as err:
        load_config([], ["tokenizer.train.batch_size=lots"])
    assert "tokenizer.train.batch_size" in str(err.value) and "--set" in str(err.value)


def test_later_files_and_overrides_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("prior: {gpt: {n_layer: 2, n_head: 2}}\n")
    b.write_text("prior: {gpt: {n_layer: 3}}\n")
    cfg = load_config([a, b], ["prior.gpt.n_embd=64"])
    assert (cfg.prior.gpt.n_layer, cfg.prior.gpt.n_head, cfg.prior.gpt.n_embd) == (3, 2, 64)


def test_unknown_quantizer_option_is_named():
    with pytest.raises(VqgenError, match="codebook_sise"):
        load_config([], ["tokenizer.quantizer.codebook_sise=3"])


def run_cli(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_unknown_dataset_is_a_clear_error(tmp_path):
    code, output = run_cli("tokenizer", "train", "--data", "nope", "--run-dir", str(tmp_path))
    assert code == 2 and "unknown dataset 'nope'" in output and "Traceback" not in output


def test_missing_data_root_is_a_clear_error(tmp_path):
    code, output = run_cli("tokenizer", "train", "--data", "imagefolder", "--data-root", str(tmp_path / "absent"),
                           "--run-dir", str(tmp_path))
    assert code == 2 and "does not exist" in output


def test_missing_config_file(tmp_path):
    code, output = run_cli("run", str(tmp_path / "none.yaml"))
    assert code == 2 and "does not exist" in output


def test_missing_inception_weights_without_network(tmp_path, monkeypatch):
    import pipeline.fid as fid

    monkeypatch.delenv("VQGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached download either

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", offline)
    with pytest.raises(VqgenError) as err:
        fid.check_weights_available(fid.resolve_weights(None))
    assert "--inception-weights" in str(err.value) and "VQGEN_INCEPTION_WEIGHTS" in str(err.value)


def test_weights_path_that_does_not_exist(tmp_path):
    import pipeline.fid as fid

    with pytest.raises(VqgenError, match="does not exist"):
        fid.resolve_weights(str(tmp_path / "w.pth"))


def test_a_missing_config_file_is_reported_before_torch_or_lightning_is_imported(tmp_path):
    """Importing Lightning takes many seconds on a small CPU; a typo in a path must not wait for it."""
    import subprocess
    import sys

    script = ("import sys\nfrom typer.testing import CliRunner\nfrom pipeline.cli import app\n"
              "result = CliRunner().invoke(app, ['sample', '-c', 'missing.yaml'])\n"
              "print(result.exit_code, 'torch' in sys.modules, 'lightning' in sys.modules)\n"
              "print(result.output)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    first, *rest = done.stdout.splitlines()
    assert first == "2 False False", done.stdout + done.stderr
    assert "missing.yaml does not exist" in "\n".join(rest)


def test_run_takes_its_config_with_c_as_well(tmp_path):
    code, output = run_cli("run", "-c", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml does not exist" in output
    code, output = run_cli("pipeline", "run", "-c", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml does not exist" in output
    code, output = run_cli("run")
    assert code == 2 and "needs a config" in output and "Traceback" not in output


def test_wrong_option_and_config_values_and_paths_are_reported_before_torch_is_imported(tmp_path):
    cases = [(["tokenize", "--split", "val"], "--split must be train or test"),
             (["tokenizer", "eval", "--tokenizer", "absent"], "--tokenizer absent does not exist"),
             (["prior", "train", "--codes", "absent"], "--codes absent does not exist"),
             (["sample", "--npz", "samples.txt"], "ending in .npz"),
             (["sample", "--label", "cats"], "--label takes a class index"),
             (["sample", "--prior", "absent"], "--prior absent does not exist"),
             (["fid", "--samples", "absent"], "--samples absent does not exist"),
             (["fid", "--inception-weights", "absent.pth"], "absent.pth does not exist"),
             # config values: the quantizer, data and training sections are checked without torch too
             (["tokenizer", "train", "--set", "tokenizer.quantizer.name=foo"], "unknown quantizer 'foo'"),
             (["tokenizer", "train", "--set", "tokenizer.quantizer.usage_decay=1.5"],
              "usage_decay must be in [0, 1), got 1.5"),
             (["tokenizer", "train", "--set", "tokenizer.quantizer.name=gumbel",
               "--set", "tokenizer.quantizer.schedule=zigzag"], "schedule must be one of exp, linear, cosine"),
             (["tokenizer", "train", "--set", "data.name=imagenet"], "unknown dataset 'imagenet'"),
             (["prior", "train", "--set", "prior.train.lr=abc"], "prior.train.lr")]
    script = ("import sys, json\nfrom typer.testing import CliRunner\nfrom pipeline.cli import app\n"
              f"cases = {[args for args, _ in cases]!r}\n"
              "outputs = [(r.exit_code, r.output) for r in (CliRunner().invoke(app, a) for a in cases)]\n"
              "print(json.dumps(['torch' in sys.modules, 'lightning' in sys.modules, outputs]))")
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    torch_loaded, lightning_loaded, outputs = json.loads(done.stdout.splitlines()[-1])
    assert not torch_loaded and not lightning_loaded, done.stderr
    for (args, needle), (code, output) in zip(cases, outputs):
        assert code == 2 and needle in " ".join(output.split()), (args, output)


def test_version_option():
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("vqgen ")


def test_every_option_of_every_command_has_help_and_a_shown_default():
    import typer

    from pipeline.cli import app

    def commands(command, path=()):  # typer may bring its own click: tell groups and options apart by duck typing
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from commands(sub, (*path, name))
        else:
            yield " ".join(path), command

    found = list(commands(typer.main.get_command(app)))
    assert len(found) >= 10
    for path, command in found:
        for param in command.params:
            if param.param_type_name == "option" and "--help" not in param.opts:
                assert param.help and len(param.help) > 10, (path, param.opts)
                assert param.is_flag or param.required or param.show_default is not False, (path, param.opts)
