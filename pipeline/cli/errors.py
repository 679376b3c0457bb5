"""User errors print one clear message and exit with code 2; ``--debug`` (or VQGEN_DEBUG=1) shows the traceback."""

from __future__ import annotations

import functools
import os
from typing import Callable

import typer
from rich.console import Console

from ..core.errors import VqgenError

console = Console(stderr=True)


def user_errors(func: Callable) -> Callable:
    """Turn VqgenError (and Ctrl-C) into a short message and exit code; tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False) or os.environ.get("VQGEN_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except VqgenError as err:
            if debug:
                raise
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; run the same command again to resume from the last checkpoint[/]")
            raise typer.Exit(130) from None
        except OSError as err:  # a full disk or a read-only folder met outside vqgen's own writers
            import errno

            if debug or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            from ..core.files import write_error

            console.print(f"[bold red]error:[/] {write_error(err.filename or 'a file', err)}", highlight=False,
                          soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
