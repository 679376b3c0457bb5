"""The Typer applications the commands register on: ``vqgen`` and its groups ``tokenizer``, ``prior``, ``pipeline``."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="vqgen: VQ-VAE-family tokenizers, PixelCNN/GPT/MaskGIT priors, sampling and FID reports.")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train and evaluate stage-1 tokenizers.")
prior_app = typer.Typer(no_args_is_help=True, help="Train stage-2 priors over code datasets.")
pipeline_app = typer.Typer(no_args_is_help=True, help="The whole chain from one config file.")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(prior_app, name="prior")
app.add_typer(pipeline_app, name="pipeline")


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vqgen {version('vqgen')}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """vqgen: VQ-VAE-family tokenizers, PixelCNN/GPT/MaskGIT priors, sampling and FID reports."""
