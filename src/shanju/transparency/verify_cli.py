"""``shanju verify``: the independent auditor's verifier (being built)."""

from __future__ import annotations

import typer

verify_app = typer.Typer(help="Verify receipts, checkpoints and the whole log.")
