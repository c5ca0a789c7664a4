"""``shanju transparency …``: the operator's commands for the log (checkpoints, keys, check)."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from typing import Annotated

import typer

from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.transparency import checkpoints

transparency_app = typer.Typer(help="The transparency log.", no_args_is_help=True)

DbUrl = Annotated[str | None, typer.Option(
    "--database-url", help="SQLAlchemy URL (default: the environment's DATABASE_URL).")]


def _signer() -> checkpoints.Signer:
    try:
        with _logs_to_stderr():
            return checkpoints.load_signer(get_settings())
    except checkpoints.CheckpointError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _logs_to_stderr() -> contextlib.AbstractContextManager[object]:
    # The command's output (a note, a key) goes to stdout for scripts; log lines to stderr.
    return contextlib.redirect_stdout(sys.stderr)


@transparency_app.command("checkpoint")
def checkpoint(database_url: DbUrl = None) -> None:
    """Sign a checkpoint of the log's current head now and print the signed note.

    Creates the signing key (SHANJU_TRANSPARENCY_KEY_FILE, mode 0600) on first use. A
    checkpoint of the same size signed less than a second ago is printed instead.
    """
    signer = _signer()
    database = Database(database_url or get_settings().database_url)
    try:
        with _logs_to_stderr(), database.transaction(write=True) as session:
            signed = checkpoints.sign_now(session, signer)
            note = signed.note
    finally:
        database.dispose()
    typer.echo(note, nl=False)


@transparency_app.command("public-key")
def public_key(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print the checkpoint verifier key (first line) and the raw Ed25519 public key in
    base64 (second line) — what auditors need to check checkpoints."""
    signer = _signer()
    raw = base64.b64encode(signer.public_key).decode()
    if as_json:
        typer.echo(json.dumps({"verifier_key": signer.key_id, "public_key": raw,
                               "origin": signer.name, "algorithm": "Ed25519"}))
        return
    typer.echo(signer.key_id)
    typer.echo(raw)
