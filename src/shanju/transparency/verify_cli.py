"""``shanju verify``: the independent auditor's verifier (logic in :mod:`.verify`).

Exit status, for scripts: 0 — everything verified; 1 — a verification failed (a bad
signature, proof, entry or total; for ``--follow`` an ALARM); 2 — usage error, or the input
could not be obtained (unreachable server, a file that is not JSON). ``--json`` adds a
machine-readable report as the last line of standard output.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from shanju.transparency import verify

verify_app = typer.Typer(
    help="Verify receipts, checkpoints and the whole log, offline or against a running site. "
    "Exit 0 = verified, 1 = verification failed, 2 = usage or network error.",
)

KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="The log's verifier key (name+hash+key), or a file holding it "
                 "(also the public-key endpoint's JSON). Obtain it independently of the site."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable report as the last line."),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for each HTTP response.", min=1),
]


def _finish(report: verify.Report, as_json: bool) -> NoReturn:
    for line in report.lines():
        typer.echo(line)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    raise typer.Exit(0 if report.ok else 1)


def _fail(message: str, as_json: bool, command: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    if as_json:
        typer.echo(json.dumps({"command": command, "ok": False, "error": message},
                              ensure_ascii=False))
    raise typer.Exit(2)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on standard error (stdout stays the report)."""
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _key(value: str | None) -> str | None:
    return verify.read_key(value) if value else None


# The monitor's options, shared by `verify --follow URL` and `verify follow URL`.
IntervalOption = Annotated[float, typer.Option("--interval", help="Seconds between polls.",
                                               min=0)]
StateOption = Annotated[Path | None, typer.Option(
    "--state", help="File keeping the last verified checkpoint across runs.")]
MaxPollsOption = Annotated[int, typer.Option(
    "--max-polls", help="Stop after this many polls (0: never).", min=0)]
KeepGoingOption = Annotated[bool, typer.Option(
    "--keep-going", help="After an ALARM, keep polling (exit 1 at the end).")]


@verify_app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    follow: Annotated[str | None, typer.Option(
        "--follow", metavar="URL", help="Monitor the site at URL (same as `verify follow URL`).",
        show_default=False)] = None,
    interval: IntervalOption = 10.0,
    state: StateOption = None,
    max_polls: MaxPollsOption = 0,
    keep_going: KeepGoingOption = False,
    key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Verify receipts, checkpoints and the whole log (see the commands)."""
    if ctx.invoked_subcommand is not None:
        if follow is not None:
            raise typer.BadParameter("--follow is not used with a command", param_hint="--follow")
        return
    if follow is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    _follow(follow, key=key, interval=interval, state_path=state, max_polls=max_polls,
            keep_going=keep_going, as_json=as_json, timeout=timeout)


@verify_app.command(
    "receipt",
    help=(
        "Verify a donor's receipt (shanju-receipt/v1). Checks the checkpoint's "
        "signature, each leaf's hash and inclusion proof and, when present, the donor's "
        "opening of the commitment; prints what the leaves say."
    ),
)
def receipt(
    source: Annotated[str, typer.Argument(
        metavar="FILE_OR_URL", help="The receipt JSON: a file, `-` for standard input, or its "
        "URL (the receipt page's URL works too).")],
    key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Verify a donor's receipt (shanju-receipt/v1)."""
    try:
        location = verify.receipt_url(source) if verify.is_url(source) else source
        value = verify.load_json(location, timeout=timeout)
        report = verify.verify_receipt(value, key=_key(key))
    except verify.FetchError as exc:
        _fail(str(exc), as_json, "receipt")
    report.data["source"] = source
    _finish(report, as_json)


@verify_app.command(
    "consistency",
    help=(
        "Verify that two signed checkpoints belong to one append-only history. Detects a "
        "rewritten or forked log: same size with different roots is a fork; otherwise the "
        "consistency proof (--proof FILE, or fetched from --url) must lead from one to "
        "the other."
    ),
)
def consistency(
    old: Annotated[str, typer.Argument(
        help="The older checkpoint: a file or URL with the signed note or the checkpoint "
        "endpoint's JSON.")],
    new: Annotated[str, typer.Argument(help="The newer checkpoint (same forms).")],
    proof: Annotated[str | None, typer.Option(
        "--proof", metavar="FILE", help="The consistency proof: the proof endpoint's JSON or "
        "base64 hashes, one a line.")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="The site to ask for the consistency proof (and, without --key, its "
        "published key).")] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Verify that two signed checkpoints belong to one append-only history."""
    try:
        old_note, _ = verify.load_checkpoint_text(verify.load_text(old, timeout=timeout))
        new_note, _ = verify.load_checkpoint_text(verify.load_text(new, timeout=timeout))
        site = verify.Site(url, timeout=timeout) if url else None
        published: str | None = None
        published_by = ""
        if key is None and site is not None:
            published, published_by = site.verifier_key(), site.base
        get_proof: verify.ProofGetter | None = None
        if proof is not None:
            proof_file = proof

            def from_file(first: int, second: int) -> list[bytes]:
                del first, second
                return verify.load_proof(proof_file)

            get_proof = from_file
        elif site is not None:
            get_proof = site.consistency_proof
        if key is None and published is None:
            raise verify.FetchError(
                "no verifier key: give --key (or --url to use the site's published key)")
        report = verify.verify_consistency(old_note, new_note, key=_key(key),
                                           get_proof=get_proof, published_key=published,
                                           published_by=published_by)
    except verify.FetchError as exc:
        _fail(str(exc), as_json, "consistency")
    _finish(report, as_json)


@verify_app.command(
    "download",
    help=(
        "Mirror a site's log and published figures into DIR for offline auditing. Writes "
        "the checkpoint, the public key, every entry, the disclosure totals and the "
        "project balances (layout: docs/transparency/verify.md); then run `shanju verify "
        "log DIR`."
    ),
)
def download(
    url: Annotated[str, typer.Argument(help="The site (its base URL).")],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the mirror.")],
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Mirror a site's log and published figures into DIR for offline auditing."""
    try:
        site = verify.Site(url, timeout=timeout)
        with _progress("entries") as progress:
            manifest = verify.download(site, directory, progress=progress)
    except verify.FetchError as exc:
        _fail(str(exc), as_json, "download")
    except OSError as exc:
        _fail(f"cannot write {directory}: {exc}", as_json, "download")
    typer.echo(f"mirrored {manifest['entries']} of {manifest['size']} entries from "
               f"{manifest['source']} into {directory}")
    if not manifest["disclosure_totals"]:
        typer.echo("  the site publishes no disclosure totals (404): balances only")
    if manifest["figures_at_size"] is None:
        typer.echo("  warning: the log kept growing while the figures were read; "
                   "they may include later movements")
    typer.echo(f"  next: shanju verify log {directory} --key <the log's verifier key>")
    if as_json:
        typer.echo(json.dumps({"command": "download", "ok": True, **manifest},
                              ensure_ascii=False))


@verify_app.command(
    "log",
    help=(
        "Audit the whole log, from a site or a mirror directory. Verifies the "
        "checkpoint's signature, rebuilds the tree from every entry (a changed or missing "
        "entry changes the root), checks every leaf, and recomputes each project's "
        "received/matched/refunded/disbursed/balance from the leaves alone to compare "
        "with the site's disclosure totals and ledger balances."
    ),
)
def log(
    source: Annotated[str, typer.Argument(
        metavar="URL_OR_DIR", help="The site's base URL, or a directory from `verify download`.")],
    key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Audit the whole log, from a site or a mirror directory."""
    try:
        opened = verify.open_source(source, timeout=timeout)
        with _progress("entries") as progress:
            report = verify.audit_log(opened, key=_key(key), progress=progress)
    except verify.FetchError as exc:
        _fail(str(exc), as_json, "log")
    _finish(report, as_json)


@verify_app.command(
    "follow",
    help=(
        "Monitor a running site (same as `shanju verify --follow URL`). Each poll "
        "verifies the checkpoint's signature, its consistency with the last verified one "
        "and the new entries; any inconsistency prints a line starting with ALARM and "
        "exits 1."
    ),
)
def follow_command(
    url: Annotated[str, typer.Argument(help="The site (its base URL).")],
    interval: IntervalOption = 10.0,
    state: StateOption = None,
    max_polls: MaxPollsOption = 0,
    keep_going: KeepGoingOption = False,
    key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Monitor a running site (same as `shanju verify --follow URL`)."""
    _follow(url, key=key, interval=interval, state_path=state, max_polls=max_polls,
            keep_going=keep_going, as_json=as_json, timeout=timeout)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _follow(url: str, *, key: str | None, interval: float, state_path: Path | None,
            max_polls: int, keep_going: bool, as_json: bool, timeout: float) -> NoReturn:
    try:
        site = verify.Site(url, timeout=timeout)
        saved = verify.load_state(state_path) if state_path is not None else None
        given = _key(key)
    except verify.FetchError as exc:
        _fail(str(exc), as_json, "follow")
    if saved is not None and saved.url != site.base:
        _fail(f"the state file {state_path} follows {saved.url}, not {site.base}", as_json,
              "follow")
    if saved is not None:
        typer.echo(f"resuming from {state_path}: size {saved.size}, root "
                   f"{verify.short(saved.root)}")
        if given is not None and given != saved.verifier_key:
            typer.echo("  note: --key differs from the key pinned in the state file; "
                       "using --key")
    follower = verify.Follower(site, key=given, state=saved)
    polls = errors = 0
    alarms: list[str] = []
    try:
        while True:
            polls += 1
            result = follower.poll()
            if follower.pinned_now:
                follower.pinned_now = False
                typer.echo(f"{_now()} pinned the site's verifier key on first contact (trust "
                           f"on first use): {follower.key}")
            if result.status == "ok":
                typer.echo(f"{_now()} poll {polls}: ok {result.message}")
                if state_path is not None and follower.state is not None:
                    try:
                        verify.save_state(state_path, follower.state)
                    except OSError as exc:
                        _fail(f"cannot write the state file {state_path}: {exc}", as_json,
                              "follow")
            elif result.status == "alarm":
                line = f"ALARM {_now()} {site.base}: {result.message}"
                alarms.append(result.message)
                typer.echo(line)
                typer.echo(line, err=True)
                if not keep_going:
                    break
            else:
                errors += 1
                typer.echo(f"{_now()} poll {polls}: error {result.message}")
            if max_polls and polls >= max_polls:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        typer.echo("stopped")
    last = follower.state
    summary: dict[str, Any] = {
        "command": "follow", "ok": not alarms and errors < polls, "url": site.base,
        "polls": polls, "alarms": alarms, "errors": errors,
        "size": last.size if last else None,
        "root": verify.b64encode(last.root) if last else None,
    }
    typer.echo(f"{polls} poll(s), {len(alarms)} alarm(s), {errors} error(s)"
               + (f"; last verified size {last.size}" if last else ""))
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    if alarms:
        raise typer.Exit(1)
    raise typer.Exit(2 if errors == polls else 0)
