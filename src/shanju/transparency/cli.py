"""``shanju transparency …``: the operator's commands for the log (checkpoints, keys, check)."""

from __future__ import annotations

import typer

transparency_app = typer.Typer(help="The transparency log.", no_args_is_help=True)
