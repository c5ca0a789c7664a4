"""The ``shanju`` command: demo, serve, migrate, ledger check, payments (reconcile, sweep) and
user administration.

Each command that touches the database opens its own transactions through
:meth:`Database.transaction` — the CLI is a transaction boundary like a request is.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.engine import make_url

from shanju import __version__
from shanju.accounts import service as accounts
from shanju.accounts.models import Role
from shanju.core.config import GENERATE_HINT, Settings, get_settings
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.core.logging import STDERR, configure_logging, report_on_stdout
from shanju.core.migrations import alembic_config, create_schema
from shanju.core.money import format_fen
from shanju.demo import seed as demo_seed
from shanju.ledger import service as ledger
from shanju.payments.gateway import Gateway
from shanju.payments.registry import gateway_setup, production_problems
from shanju.transparency import check as transparency_checks
from shanju.transparency.cli import transparency_app
from shanju.transparency.verify_cli import verify_app

if TYPE_CHECKING:
    from shanju.reconciliation.flows import RunResult

app = typer.Typer(
    help="Shanju (善举): an open-source internet charity platform.",
    no_args_is_help=True,
    add_completion=False,
)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
bench_app = typer.Typer(help="Benchmarks that print a JSON report.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
campaigns_app = typer.Typer(help="Giving-day campaigns.", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")
payments_app = typer.Typer(help="Real payments: the daily reconciliation and the sweep.",
                           no_args_is_help=True)
app.add_typer(payments_app, name="payments")
app.add_typer(transparency_app, name="transparency")
app.add_typer(verify_app, name="verify")
console = Console()

DEFAULT_DEMO_DB = Path("var/demo.sqlite3")
STAGES = {
    "organizations": "Organizations and staff",
    "projects": "Projects",
    "donations": "Donations",
    "ledger": "Ledger postings",
    "giving day": "Giving day",
    "summit": "Online summit",
    "done": "Done",
}

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (default: the DATABASE_URL environment variable or settings).",
        show_default=False,
    ),
]


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _database(url: str | None) -> Database:
    return Database(url or get_settings().database_url)


def schema_is_current(database: Database) -> bool:
    """Tell whether the database is migrated to the newest revision."""
    heads = set(ScriptDirectory.from_config(alembic_config(database)).get_heads())
    with database.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    """Run Shanju's command line."""
    if version:
        console.print(f"shanju {__version__}")
        raise typer.Exit()


# --- demo ----------------------------------------------------------------------------------


def demo_upload_dir(db_path: Path) -> Path:
    """Where the demo keeps its uploads (its projects' covers): beside its database."""
    return db_path.resolve().parent / "uploads"


def prepare_demo(db_path: Path, *, reset: bool = False, scale: float = 1.0) -> Database:
    """Migrate the demo database and seed it if it is empty; return it ready to serve."""
    db_path = db_path.resolve()
    upload_dir = demo_upload_dir(db_path)
    if reset:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    database = Database(f"sqlite:///{db_path}")
    with console.status("Migrating the database…"):
        create_schema(database)
    with database.transaction(write=False) as session:
        empty = demo_seed.is_empty(session)
    if not empty:
        console.print(f"Reusing the demo data in [bold]{db_path}[/] (use --reset to start over).")
        _approve_demo_payment_routes(database)
        _give_demo_covers(database, upload_dir)
        return database
    plan = demo_seed.Plan.for_scale(scale)
    started = time.perf_counter()
    columns = (
        TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("Seeding demo data", total=plan.total_steps)

        def advance(steps: int, stage: str) -> None:
            progress.update(task, advance=steps, description=STAGES.get(stage, stage))

        with database.transaction() as session:
            report = demo_seed.seed(session, scale=scale, progress=advance,
                                    upload_dir=upload_dir)
    console.print(
        f"Seeded {report.organizations} organizations, {report.projects} projects and "
        f"{report.donations:,} donations ({format_fen(report.raised_fen, 'zh_CN')} raised) "
        f"in {time.perf_counter() - started:.1f} s."
    )
    if report.summit_slug:
        console.print(
            f"The online summit /summits/{report.summit_slug} has "
            f"{report.summit_organizations:,} registered organizations."
        )
    return database


def _approve_demo_payment_routes(database: Database) -> None:
    """A demo seeded before it paid through the emulators: give its organizations the payment
    routes a new seed approves (nothing if it has any route at all)."""
    from sqlalchemy import exists, select

    from shanju.accounts.models import User
    from shanju.demo import payments as demo_payments
    from shanju.organizations.models import PaymentRoute

    with database.transaction(write=False) as session:
        if session.scalar(select(exists().where(PaymentRoute.id.is_not(None)))):
            return
    with database.transaction() as session:
        reviewer = session.scalar(select(User).where(User.email == "reviewer@demo.shanju.org"))
        if reviewer is None:
            return
        added = demo_payments.do_approve_routes(session=session, reviewer=reviewer,
                                                secret_key=get_settings().secret_key)
    console.print(f"Approved {added} payment routes of the demo organizations.")


def _give_demo_covers(database: Database, upload_dir: Path) -> None:
    """A demo seeded before it drew covers, or whose uploads were deleted: draw them."""
    from shanju.demo import covers

    with database.transaction() as session:
        given = covers.do_give_missing_covers(session=session, upload_dir=upload_dir)
    if given:
        console.print(f"Drew covers for {given} demo projects.")


def print_demo_accounts() -> None:
    """Print the demo accounts and their shared password."""
    table = Table(title="Demo accounts", title_justify="left")
    table.add_column("Role")
    table.add_column("Email")
    table.add_column("Password")
    for email, role, _name in demo_seed.DEMO_ACCOUNTS:
        table.add_row(role.value, email, demo_seed.DEMO_PASSWORD)
    console.print(table)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    db: Annotated[Path, typer.Option(help="The demo's SQLite file.")] = DEFAULT_DEMO_DB,
    reset: Annotated[bool, typer.Option(help="Delete the demo database first.")] = False,
    scale: Annotated[float, typer.Option(hidden=True)] = 1.0,
    crowd: Annotated[bool, typer.Option(
        help="Keep giving a few gifts a second to the live giving day.")] = True,
) -> None:
    """Start the demo platform on an embedded SQLite database seeded with demo data."""
    database = prepare_demo(db, reset=reset, scale=scale)
    # Code that reads the process-wide settings (templates) must see the demo database too.
    os.environ["DATABASE_URL"] = database.url
    os.environ["SHANJU_ENVIRONMENT"] = "development"
    # Links, QR codes and the transparency log's origin name the address actually served.
    os.environ.setdefault("SHANJU_BASE_URL", f"http://{host}:{port}")
    get_settings.cache_clear()
    settings = Settings(environment="development", database_url=database.url,
                        upload_dir=demo_upload_dir(db))
    print_demo_accounts()
    _warn_if_holiday_calendar_runs_out()
    from shanju.app import create_app
    from shanju.core.mailsink import MailSink
    from shanju.demo import accounts as demo_accounts
    from shanju.demo import payments as demo_payments

    # Email goes over SMTP to a local sink; SMS codes to Alibaba Cloud SMS emulated by this
    # server (docs/accounts.md).
    sink = MailSink().start()
    settings = demo_accounts.with_mail_sink(settings, sink)
    application = create_app(settings, database=database)
    # WeChat Pay and Alipay, emulated by this very server: the real gateways talk to it.
    demo_payments.attach(application, key_dir=db.resolve().parent / demo_payments.KEY_DIR,
                         url=demo_payments.server_url(host, port))
    demo_accounts.attach(application, url=demo_payments.server_url(host, port), sink=sink)
    served = f"http://{host}:{port}"
    console.print(
        "Gifts pay through WeChat Pay and Alipay emulated by this server (docs/payments.md); "
        f"their orders: {served}{demo_payments.WECHATPAY_PATH}/emulator/orders and "
        f"{served}{demo_payments.ALIPAY_PATH}/emulator/state", soft_wrap=True)
    console.print(
        f"Emails go over SMTP to a local mail sink on {sink.host}:{sink.port}: read them at "
        f"{served}{demo_accounts.MAILBOX_PATH}. SMS codes (sign in with a phone) go to Alibaba "
        f"Cloud SMS emulated by this server: {served}{demo_accounts.SMS_INBOX_PATH}",
        soft_wrap=True)
    console.print(f"Serving the demo on [bold]http://{host}:{port}[/] — Ctrl+C stops it.")
    donors = None
    if crowd:
        from shanju.demo.crowd import Crowd

        donors = Crowd(database, lambda: application.state.engine)
        donors.start()
    try:
        # No per-message deflate on the live rooms' WebSockets: compressing each batch once per
        # connection costs more CPU than the bytes are worth (docs/benchmarks.md, summit).
        uvicorn.run(application, host=host, port=port, log_level="info",
                    ws="websockets-sansio", ws_per_message_deflate=False)
    finally:
        if donors is not None:
            donors.stop()
        sink.stop()


def _warn_if_holiday_calendar_runs_out() -> None:
    """Say at start-up when complaints' deadlines will soon need an unknown holiday year."""
    from shanju.complaints.service import warn_if_calendar_runs_out
    from shanju.core.clock import today_cn

    warn_if_calendar_runs_out(today_cn())


# --- production ----------------------------------------------------------------------------


def workers_problems(settings: Settings) -> list[str]:
    """Why ``serve --workers N`` (N > 1) cannot run with ``settings`` (ADR 0037): every
    process must share the database's writers, the rate limits and the live rooms."""
    problems = []
    if settings.database_url.startswith("sqlite"):
        problems.append(
            "SQLite takes one server process: its one writer is the process's giving-day "
            "engine, and several processes would queue at the file's write lock "
            "(docs/locking.md). Serve with --workers 1, or use PostgreSQL for several.")
    if settings.summit_broker_url in ("", "memory://"):
        problems.append(
            "the summit's live rooms need a shared broker: set SHANJU_SUMMIT_BROKER_URL to "
            "redis://… or postgresql://….")
    if settings.rate_limit_url in ("", "memory://"):
        problems.append(
            "the rate limits would count in each process apart (N times the attempts): set "
            "SHANJU_RATE_LIMIT_URL to redis://….")
    return problems


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxies whose X-Forwarded-* headers are trusted.")
    ] = "127.0.0.1",
) -> None:
    """Serve with production settings from the environment (behind a TLS proxy)."""
    os.environ.setdefault("SHANJU_ENVIRONMENT", "production")
    get_settings.cache_clear()
    settings = get_settings()
    # Secrets, sandbox variables, the payment providers (none, or one partly set or invalid).
    if problems := production_problems(settings):
        # One line per refusal, all at once, never wrapped: an operator fixes them together.
        console.print("[red]Refusing to start in production:[/]")
        for problem in problems:
            console.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)
        if settings.secret_problems():
            console.print(f"  Make a secret with: {GENERATE_HINT}", markup=False,
                          highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if workers > 1 and (problems := workers_problems(settings)):
        console.print(f"[red]Refusing to start {workers} workers:[/]")
        for problem in problems:
            console.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    database = Database(settings.database_url)
    try:
        current = schema_is_current(database)
    finally:
        database.dispose()
    if not current:
        console.print("[red]The database schema is not up to date:[/] run `shanju migrate`.")
        raise typer.Exit(2)
    _warn_if_holiday_calendar_runs_out()
    console.print(
        f"Serving Shanju ({settings.environment}) on {_redacted(settings.database_url)} "
        f"at http://{host}:{port} with {workers} worker(s)."
    )
    uvicorn.run(
        "shanju.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # see `demo` above
        log_level="info",
    )


@app.command()
def migrate(database_url: DatabaseUrlOption = None) -> None:
    """Create or upgrade the database schema to the newest revision."""
    database = _database(database_url)
    try:
        with console.status("Migrating…"):
            create_schema(database)
    finally:
        database.dispose()
    console.print(f"Database {_redacted(database.url)} is up to date.")


# --- ledger --------------------------------------------------------------------------------


@ledger_app.command("check")
def ledger_check(database_url: DatabaseUrlOption = None) -> None:
    """Recompute every balance and entry sum from the postings; exit 1 on any mismatch."""
    database = _database(database_url)
    try:
        with database.transaction(write=False) as session:
            report = ledger.check(session)
    finally:
        database.dispose()
    summary = Table(title="Ledger check", title_justify="left", show_header=False)
    summary.add_column("What")
    summary.add_column("Value", justify="right")
    summary.add_row("Accounts", f"{report.accounts:,}")
    summary.add_row("Journal entries", f"{report.entries:,}")
    summary.add_row("Postings", f"{report.postings:,}")
    summary.add_row("Sum of all postings (fen)", f"{report.total_fen:,}")
    summary.add_row("Unbalanced entries", str(len(report.unbalanced_entries)))
    summary.add_row("Mismatched balances", str(len(report.mismatched_accounts)))
    console.print(summary)
    if report.mismatched_accounts:
        table = Table(title="Stored balances that differ from their postings", title_justify="left")
        table.add_column("Account")
        table.add_column("Stored (fen)", justify="right")
        table.add_column("Recomputed (fen)", justify="right")
        table.add_column("Difference (fen)", justify="right")
        for code, stored, actual in report.mismatched_accounts:
            table.add_row(code, f"{stored:,}", f"{actual:,}", f"{stored - actual:+,}")
        console.print(table)
    if report.unbalanced_entries:
        shown = ", ".join(f"#{i}" for i in report.unbalanced_entries[:20])
        console.print(f"Unbalanced entries: {shown}")
    if not report.ok:
        console.print("[red]✗ The ledger does not reconcile.[/]")
        raise typer.Exit(1)
    console.print("[green]✓ Every entry balances and every stored balance matches.[/]")


# --- transparency --------------------------------------------------------------------------


@transparency_app.command("check")
def transparency_check(
    database_url: DatabaseUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check the log against the ledger and itself (entries ↔ leaves, hashes, tree, checkpoints)."""
    database = _database(database_url)
    try:
        with database.transaction(write=False) as session:
            report = transparency_checks.check(session)
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps({
            "ok": report.ok, "leaves": report.leaves, "entries": report.entries,
            "pending": report.pending, "nodes": report.nodes,
            "checkpoints": report.checkpoints, "size": report.size,
            "root": report.root, "problems": dict(report.counts),
            "examples": {k: v for k, v in report.problems.items() if v},
        }, ensure_ascii=False))
    else:
        summary = Table(title="Transparency log check", title_justify="left", show_header=False)
        summary.add_column("What")
        summary.add_column("Value", justify="right")
        summary.add_row("Leaves", f"{report.leaves:,}")
        summary.add_row("Journal entries", f"{report.entries:,}")
        summary.add_row("Queued leaves (not yet sequenced)", f"{report.pending:,}")
        summary.add_row("Stored interior nodes", f"{report.nodes:,}")
        summary.add_row("Signed checkpoints", f"{report.checkpoints:,}")
        summary.add_row("Root", report.root)
        console.print(summary)
        for kind, examples in report.problems.items():
            console.print(f"[red]{kind}[/]: {report.counts[kind]:,}")
            for text in examples:
                console.print(f"  {text}")
    if not report.ok:
        if not as_json:
            console.print("[red]✗ The log and the ledger do not agree.[/]")
        raise typer.Exit(1)
    if not as_json:
        console.print("[green]✓ Every posting is in the log and every leaf is a posting; "
                      "the tree and its checkpoints are intact.[/]")


# --- campaigns -----------------------------------------------------------------------------


@campaigns_app.command("check")
def campaigns_check(database_url: DatabaseUrlOption = None) -> None:
    """Reconcile giving-day campaigns with the ledger and their gifts; exit 1 on a mismatch."""
    from shanju.campaigns.check import check as check_campaigns

    database = _database(database_url)
    try:
        with database.transaction(write=False) as session:
            report = check_campaigns(session)
    finally:
        database.dispose()
    summary = Table(title="Giving-day check", title_justify="left", show_header=False)
    summary.add_column("What")
    summary.add_column("Value", justify="right")
    summary.add_row("Gifts", f"{report.gifts:,}")
    summary.add_row("Batches", f"{report.batches:,}")
    summary.add_row("Pools", f"{report.pools:,}")
    summary.add_row("Ledger reconciles", "yes" if report.ledger_ok else "no")
    summary.add_row("Problems", str(len(report.problems)))
    console.print(summary)
    for problem in report.problems[:50]:
        console.print(f"  • {problem}", markup=False)
    if not report.ok:
        console.print("[red]✗ The giving-day state does not reconcile.[/]")
        raise typer.Exit(1)
    console.print("[green]✓ Batches, pools, caps, counters and stats match the gifts and the "
                  "ledger.[/]")


@campaigns_app.command("settle")
def campaigns_settle(database_url: DatabaseUrlOption = None) -> None:
    """Settle held matches whose public notice period (公示期) has passed to their projects."""
    from shanju.campaigns.flows import settle_held

    database = _database(database_url)
    try:
        with console.status("Settling held matches…"), database.transaction() as session:
            settled = settle_held(session=session)
    finally:
        database.dispose()
    if settled:
        console.print(f"[green]✓ Settled {settled:,} held match(es) whose notice period "
                      "had passed.[/]")
    else:
        console.print("Nothing to settle: no held match has reached the end of its notice "
                      "period.")


# --- payments ------------------------------------------------------------------------------


def configured_gateways(settings: Settings) -> Mapping[str, Gateway]:
    """The installation's real payment gateways (WeChat Pay, Alipay), by name: the same the
    application serves with (``payments.registry``; a provider partly set is left out)."""
    return gateway_setup(settings).gateways


def _gateways_or_exit(settings: Settings, err: Console) -> Mapping[str, Gateway]:
    # The report (a table or --json) is standard output; the job's log lines go to stderr.
    configure_logging(json=settings.log_json, stream=STDERR)
    gateways = configured_gateways(settings)
    if not gateways:
        err.print("[red]No real payment provider (WeChat Pay, Alipay) is configured: "
                  "nothing to reconcile or ask.[/]")
        raise typer.Exit(2)
    return gateways


def _fen(fen: int) -> str:
    return format_fen(fen, "zh_CN")


@payments_app.command("reconcile")
def payments_reconcile(
    date: Annotated[str | None, typer.Option(
        "--date", help="The China-time day whose bills to reconcile, YYYY-MM-DD (default: "
                       "yesterday).", show_default=False)] = None,
    provider: Annotated[str | None, typer.Option(
        "--provider", help="Only this provider (wechatpay, alipay); default: every one "
                           "configured.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Match each provider's bill of a day against our orders and refunds; credit what the
    provider took and we did not (exactly once); record the rest for reviewers. Exit 1 while
    any mismatch of the day is open or a bill could not be checked."""
    from shanju.campaigns.orders import OrderSigner
    from shanju.core.clock import today_cn
    from shanju.reconciliation import flows as reconciliation

    err = Console(stderr=True)
    try:
        day = dt.date.fromisoformat(date) if date else today_cn() - dt.timedelta(days=1)
    except ValueError:
        err.print(f"[red]--date must be a day written YYYY-MM-DD, not {date!r}.[/]")
        raise typer.Exit(2) from None
    if day > today_cn():
        err.print(f"[red]{day} has not begun yet in China: there is no bill of it.[/]")
        raise typer.Exit(2)
    settings = get_settings()
    gateways = _gateways_or_exit(settings, err)
    database = _database(database_url)
    try:
        results = reconciliation.reconcile_day(
            database=database, gateways=gateways, day=day, provider=provider,
            secret_key=settings.secret_key,
            hash_payer=OrderSigner(settings.secret_key).payer_hash,
            progress=lambda line: err.print(f"» {line}", markup=False, highlight=False))
    except DomainError as exc:
        err.print(f"[red]{exc.message}[/]")
        raise typer.Exit(2) from exc
    finally:
        database.dispose()
    still_open = sum(r.open for r in results)
    ok = still_open == 0 and all(r.status.value == "complete" for r in results)
    if as_json:
        typer.echo(json.dumps({"day": day.isoformat(), "ok": ok, "open": still_open,
                               "runs": [r.as_json() for r in results]}, ensure_ascii=False))
    else:
        for result in results:
            _print_run(result)
    if not ok:
        if not as_json:
            console.print(f"[red]✗ {still_open} mismatch(es) of {day} open; see "
                          "/review/reconciliation.[/]" if still_open else
                          f"[red]✗ Not every bill of {day} could be checked.[/]")
        raise typer.Exit(1)
    if not as_json:
        console.print(f"[green]✓ Every bill of {day} agrees with our records.[/]")


def _print_run(result: RunResult) -> None:
    data = result.as_json()
    table = Table(title=f"Reconciliation of {data['day']} · {data['provider']} (run "
                        f"#{data['run_id']})", title_justify="left", show_header=False)
    table.add_column("What")
    table.add_column("Value", justify="right")
    table.add_row("Status", data["status"])
    table.add_row("Payments on the bill", f"{data['bill_payments']:,} · "
                                          f"{_fen(data['bill_payments_fen'])}")
    table.add_row("Payments matched", f"{data['payments_matched']:,} · "
                                      f"{_fen(data['payments_matched_fen'])}")
    table.add_row("Refunds on the bill", f"{data['bill_refunds']:,} · "
                                         f"{_fen(data['bill_refunds_fen'])}")
    table.add_row("Refunds matched", f"{data['refunds_matched']:,} · "
                                     f"{_fen(data['refunds_matched_fen'])}")
    table.add_row("Mismatches found", str(data["mismatches"]))
    table.add_row("Credited now", str(data["credited"]))
    table.add_row("Cleared (no longer found)", str(data["cleared"]))
    table.add_row("Open for the day", str(data["open"]))
    console.print(table)
    for finding in data["findings"]:
        refund = f" {finding['out_refund_no']}" if finding["out_refund_no"] else ""
        done = finding["resolution"] or "open"
        tried = f" ({finding['attempt']})" if finding["attempt"] else ""
        console.print(f"  • {finding['kind']} {finding['out_trade_no']}{refund}: "
                      f"{done}{tried}", markup=False, highlight=False)
    for problem in data["problems"]:
        console.print(f"  ! {problem}", markup=False, highlight=False)


@payments_app.command("sweep")
def payments_sweep(
    older_than: Annotated[int, typer.Option(
        "--older-than", min=0, max=7 * 24 * 60,
        help="Minutes an order has been open (or a refund pending) before it is asked "
             "about.")] = 10,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many orders "
                                                             "and as many refunds.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Ask the providers about orders still open and refunds still pending (their callbacks
    may never come) and apply the answers exactly once. Exit 1 if a question failed."""
    from shanju.campaigns.orders import OrderSigner
    from shanju.core.clock import utcnow
    from shanju.reconciliation import flows as reconciliation

    err = Console(stderr=True)
    settings = get_settings()
    gateways = _gateways_or_exit(settings, err)
    database = _database(database_url)
    try:
        result = reconciliation.sweep(
            database=database, gateways=gateways,
            older_than=utcnow() - dt.timedelta(minutes=older_than),
            secret_key=settings.secret_key,
            hash_payer=OrderSigner(settings.secret_key).payer_hash, limit=limit,
            progress=lambda line: err.print(f"» {line}", markup=False, highlight=False))
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        console.print(
            f"Orders asked: {result.orders} (credited {result.credited}, closed "
            f"{result.closed}, still open {result.still_open}); refunds asked: "
            f"{result.refunds} (settled {result.refunds_settled}); skipped {result.skipped}.")
        for error in result.errors:
            console.print(f"  ! {error}", markup=False, highlight=False)
    if result.errors:
        raise typer.Exit(1)


# --- benchmarks ----------------------------------------------------------------------------


@bench_app.callback()
def bench_main(ctx: typer.Context) -> None:
    """Every benchmark's standard output is its JSON report alone: while one runs, log lines
    (the app's, the engine's, httpx's warnings) go to standard error."""
    ctx.with_resource(report_on_stdout())


def _bench_progress(total: int, label: str) -> tuple[Progress, Callable[[int], None]]:
    progress = Progress(
        TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )
    task = progress.add_task(label, total=total)
    return progress, lambda n: progress.update(task, advance=n)


@bench_app.command("donations")
def bench_donations(
    donations: Annotated[int, typer.Option(min=1, help="How many gifts to give.")] = 2000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Concurrent donors.")] = 4,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="An EMPTY database to use (default: a temporary SQLite file).",
        show_default=False)] = None,
) -> None:
    """Give gifts end to end (request, then signed callback and credit); print JSON."""
    from shanju.bench import common
    from shanju.bench import donations as donations_bench

    if database_url:
        database = Database(database_url)
        create_schema(database)
    else:
        database, _folder = common.temporary_sqlite()
    progress, advance = _bench_progress(donations, "Giving")
    try:
        with progress:
            report = donations_bench.bench_donations(
                database, donations=donations, workers=workers, progress=advance)
    finally:
        database.dispose()
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    if report["errors"] or not report["ledger_ok"]:
        raise typer.Exit(1)


@bench_app.command("http")
def bench_http(
    donations: Annotated[int, typer.Option(min=1, help="How many gifts to give.")] = 20_000,
    workers: Annotated[int, typer.Option(
        min=1, max=16, help="Server processes (uvicorn workers; >1 needs PostgreSQL).")] = 1,
    clients: Annotated[int, typer.Option(min=1, max=16, help="Client processes.")] = 2,
    connections: Annotated[int, typer.Option(
        min=1, max=512, help="Keep-alive connections per client process.")] = 32,
    port: Annotated[int, typer.Option(help="Port for the benchmark's server.")] = 8106,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="An EMPTY database to use (default: a temporary SQLite file).",
        show_default=False)] = None,
    provider: Annotated[str, typer.Option(
        help="wechatpay: orders opened at WeChat Pay (the emulator) and its notifications to "
             "the gift pipeline's intake; sandbox: the stateless orders and the sandbox's "
             "callbacks, to compare.")
    ] = "wechatpay",
    floor: Annotated[bool, typer.Option(
        help="Measure the floor first: the same requests to a bare ASGI endpoint.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
) -> None:
    """Giving-day gifts through the running server's HTTP API, from several client processes
    over loopback: each gift's order request and its provider's callback, and the same
    requests to a bare ASGI endpoint on the same stack (the floor). Last line: one JSON
    object."""
    from shanju.bench import http as bench

    if provider not in bench.PROVIDERS:
        raise typer.BadParameter(f"one of {', '.join(bench.PROVIDERS)}", param_hint="--provider")
    if workers > 1 and (database_url is None or database_url.startswith("sqlite")):
        raise typer.BadParameter(
            "several workers need PostgreSQL (--database-url postgresql+psycopg://…): SQLite "
            "takes one server process (docs/locking.md)", param_hint="--workers")
    err = Console(stderr=True)
    progress, advance = _bench_progress(2 * donations, "Orders and callbacks")
    with progress:
        report = bench.run(
            donations=donations, clients=clients, connections=connections, workers=workers,
            port=port, database_url=database_url, provider=provider, floor=floor,
            progress=advance, on_phase=lambda msg: progress.console.log(msg),
        )
    if not as_json:
        err.print(
            f"{report['donations_per_s']:,} donations/s · {report['gift_requests_per_s']:,} "
            f"gift requests/s · floor {report['floor_requests_per_s']} requests/s · ratio "
            f"{report['ratio']} · p99 orders {report['orders']['p99_ms']} ms, callbacks "
            f"{report['callbacks']['p99_ms']} ms · {report['server_cpu_us_per_donation']} µs "
            f"server CPU per donation · errors {report['errors']} · invariants "
            f"{'ok' if report['ok'] else 'FAILED'} ({report['provider']}, {report['db']}, "
            f"{report['workers']} worker(s), {report['clients']} clients × "
            f"{report['connections'] // report['clients']} connections)")
    typer.echo(json.dumps(report, ensure_ascii=False))
    if not report["ok"]:
        raise typer.Exit(1)


@bench_app.command("multi-node")
def bench_multi_node(
    donations: Annotated[int, typer.Option(min=2, help="How many gifts to give.")] = 2000,
    workers_per_node: Annotated[int, typer.Option(
        min=1, max=8, help="`shanju serve --workers` of each node.")] = 1,
    connections: Annotated[int, typer.Option(
        min=2, max=256, help="The client's keep-alive connections.")] = 16,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="A PostgreSQL server (any database on it) where the rehearsal "
                               "creates and drops its own database (default: DATABASE_URL).",
        show_default=False)] = None,
    redis_url: Annotated[str, typer.Option(
        "--redis-url", help="The Redis the nodes share (keys of the run are deleted).")
    ] = "redis://127.0.0.1:6379/0",
    nginx: Annotated[bool, typer.Option(
        help="nginx in front of both nodes, if installed (else the client hits both).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
) -> None:
    """A multi-node rehearsal: two `shanju serve` nodes in network namespaces of their own
    against one PostgreSQL and one Redis, nginx in front, a client giving through both; the
    invariants at the end. Needs root (namespaces). Last line: one JSON object."""
    from shanju.bench import multinode as bench

    if database_url is None:
        env_url = os.environ.get("DATABASE_URL", "")
        database_url = env_url if env_url.startswith("postgresql") else None
    err = Console(stderr=True)
    progress, advance = _bench_progress(2 * donations, "Orders and callbacks")
    try:
        with progress:
            report = bench.run(
                donations=donations, workers_per_node=workers_per_node,
                connections=connections, database_url=database_url, redis_url=redis_url,
                use_nginx=nginx, progress=advance,
                on_phase=lambda msg: progress.console.log(msg))
    except bench.Refused as exc:
        err.print(f"[red]Refusing to rehearse:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if not as_json:
        nodes = " · ".join(f"node {name}: {c['orders']} orders, {c['callbacks']} callbacks"
                           for name, c in report["per_node"].items())
        err.print(
            f"{report['donations_per_s']:,} donations/s through {report['proxy']} · {nodes} · "
            f"{report['callbacks_on_other_node']} callbacks on the other node · p99 orders "
            f"{report['orders']['p99_ms']} ms, callbacks {report['callbacks']['p99_ms']} ms · "
            f"errors {report['errors']} · invariants {'ok' if report['ok'] else 'FAILED'} · "
            f"load {report['loadavg'][0]}")
    typer.echo(json.dumps(report, ensure_ascii=False))
    if not report["ok"]:
        raise typer.Exit(1)


@bench_app.command("pages")
def bench_pages(
    requests: Annotated[int, typer.Option(min=1, help="Requests per page.")] = 50,
    db: Annotated[Path, typer.Option(help="The demo database (seeded if empty).")] = Path(
        "var/bench-demo.sqlite3"),
) -> None:
    """Time the main pages and API reads on the demo data set; print JSON."""
    from shanju.bench import pages as bench

    global console  # noqa: PLW0603 - keep stdout for the JSON report alone
    console, stdout_console = Console(stderr=True), console
    try:
        database = prepare_demo(db)
    finally:
        console = stdout_console
    progress, advance = _bench_progress(requests * len(bench.PAGES), "Requests")
    try:
        with progress:
            report = bench.bench_pages(database, requests=requests, progress=advance)
    finally:
        database.dispose()
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))


class BenchDb(enum.StrEnum):
    """The databases ``shanju bench giving-day`` runs on."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@bench_app.command("giving-day")
def bench_giving_day(
    db: Annotated[BenchDb, typer.Option(
        help="SQLite (a temporary file) or PostgreSQL (a fresh database at 127.0.0.1:5432, "
             "dropped afterwards).")] = BenchDb.SQLITE,
    donations: Annotated[int, typer.Option(min=1, help="Unique gifts (plus ~2% retried "
                                                       "deliveries).")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
    rate: Annotated[float, typer.Option(min=0, help="Arrivals per second (0: as fast as the "
                                                    "engine takes them).")] = 0,
    in_flight: Annotated[int, typer.Option(min=1, help="Unanswered gifts at most (when "
                                                       "--rate is 0).")] = 10_000,
    baseline: Annotated[int, typer.Option(min=1, help="Gifts in the one-transaction-per-gift "
                                                      "baseline.")] = 5_000,
    max_wait_ms: Annotated[float | None, typer.Option(help="Engine: gather a batch for at "
                                                           "most this long.")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Engine: gifts per batch at most.")
                         ] = None,
    seed: Annotated[int, typer.Option(help="The workload's random seed.")] = 99,
    writers: Annotated[int | None, typer.Option(
        min=1, max=16, help="Escrow writer processes (docs/locking.md, 'Several writers'); "
                            "more than 1 needs PostgreSQL. Default: one group-commit engine "
                            "in this process.")] = None,
) -> None:
    """A 99-style giving-day opening through the group-commit engine, against a naive
    one-transaction-per-gift baseline; checks every invariant; the last line is JSON."""
    from shanju.bench import giving_day

    if writers is not None and writers > 1 and db is BenchDb.SQLITE:
        raise typer.BadParameter(
            "SQLite takes one writer process (its database file has one write lock): use "
            "--db postgresql for several", param_hint="--writers")
    options: dict[str, object] = {}
    if max_wait_ms is not None:
        options["max_wait_ms"] = max_wait_ms
    if max_batch is not None:
        options["max_batch"] = max_batch
    progress = Progress(
        TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )
    labels = {"setup": "Setting up", "engine": "Engine", "checking": "Checking invariants",
              "baseline": "Baseline (1 gift/txn)"}
    tasks: dict[str, TaskID] = {}

    def advance(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(labels.get(phase, phase), total=total)
        progress.update(tasks[phase], completed=done, total=total)

    with progress:
        report = giving_day.bench_giving_day(
            db=db.value, donations=donations, rate=rate, in_flight=in_flight,
            baseline_sample=baseline, seed=seed, engine_options=options, writers=writers,
            progress=advance)
    if not as_json:
        err = Console(stderr=True)
        table = Table(title=f"Giving day on {report['db']}", show_header=False)
        for key in ("writers", "donations", "submissions", "seconds", "donations_per_s",
                    "p50_ms", "p99_ms", "baseline_donations_per_s", "speedup",
                    "pool_exhausted_at_s", "log_drain_s"):
            table.add_row(key, str(report[key]))
        for writer in report["per_writer"]:
            table.add_row(f"writer {writer['writer']}", f"{writer['donations_per_s']}/s")
        table.add_row("matched / budget", f"{format_fen(report['matched_fen'])} / "
                                          f"{format_fen(report['budget_fen'])}")
        for key, value in report["invariants"].items():
            table.add_row(key, "[green]yes[/]" if value else "[red]NO[/]")
        err.print(table)
        for problem in report["problems"]:
            err.print(f"[red]✗ {problem}[/]")
    typer.echo(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
    if report["errors"] or not all(report["invariants"].values()) or not all(
            report["baseline_invariants"].values()):
        raise typer.Exit(1)


class TransparencyBenchDb(enum.StrEnum):
    """Where ``shanju bench transparency`` puts the database-backed log (or nowhere)."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    NONE = "none"


@bench_app.command("transparency")
def bench_transparency(
    leaves: Annotated[int, typer.Option(min=1, help="Leaves in the in-memory tree.")
                      ] = 1_000_000,
    db: Annotated[TransparencyBenchDb, typer.Option(
        help="The database-backed log: a temporary SQLite file, a fresh PostgreSQL database "
             "at 127.0.0.1:5432 (dropped afterwards), or none.")] = TransparencyBenchDb.SQLITE,
    db_leaves: Annotated[int, typer.Option(min=1, help="Leaves appended to the database log "
                                                       "at most (the first of the same).")
                         ] = 1_000_000,
    pymerkle_leaves: Annotated[int, typer.Option(
        min=0, help="Leaves given to pymerkle at most (it keeps ~350 bytes of Python objects "
                    "a leaf and appends ~30,000/s); 0 skips it.")] = 1_000_000,
    proofs: Annotated[int, typer.Option(min=1, help="Random proofs timed per kind.")] = 1_000,
    db_proofs: Annotated[int, typer.Option(min=1, help="Random proofs from the database "
                                                       "per kind.")] = 200,
    seed: Annotated[int, typer.Option(help="The leaves' and indexes' random seed.")] = 6962,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
) -> None:
    """Merkle log speed: batched append, inclusion/consistency proofs and their verification,
    in memory and through the database, side by side with pymerkle on the same leaves.
    The last line is one JSON object."""
    from shanju.bench import transparency as transparency_bench

    labels = {"ours_append": "Appending (ours)", "ours_proofs": "Proofs (ours)",
              "pymerkle_append": "Appending (pymerkle)", "pymerkle_proofs": "Proofs (pymerkle)",
              "db_append": f"Appending ({db.value})", "db_proofs": f"Proofs ({db.value})",
              "db_proofs_indexed": f"Proofs ({db.value}, by level)"}
    progress = Progress(
        TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def advance(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(labels.get(phase, phase), total=total)
        if done == total or done % 1_000 == 0:
            progress.update(tasks[phase], completed=done, total=total)

    with progress:
        report = transparency_bench.bench_transparency(
            leaves_count=leaves, db=None if db == TransparencyBenchDb.NONE else db.value,
            pymerkle_leaves=pymerkle_leaves, db_leaves=db_leaves, proofs=proofs,
            db_proofs=db_proofs, seed=seed, progress=advance)
    if not as_json:
        err = Console(stderr=True)
        ours = report["ours"]
        table = Table(title=f"Transparency log, {leaves:,} leaves", show_header=False)
        table.add_row("append (ours, in memory)", f"{ours['append']['leaves_per_s']:,.0f} leaves/s")
        for kind in ("inclusion", "consistency"):
            gen, ver = ours[kind]["generate"], ours[kind]["verify"]
            table.add_row(f"{kind} proof (ours)", f"{gen['mean_us']} µs (p99 {gen['p99_us']}), "
                                                  f"verify {ver['mean_us']} µs")
        pm = report["pymerkle"]
        if "append" in pm:
            table.add_row(f"pymerkle ({pm['leaves']:,} leaves)",
                          f"append {pm['append']['leaves_per_s']:,.0f}/s, inclusion "
                          f"{pm['inclusion']['generate']['mean_us']} µs")
            table.add_row("speedup vs pymerkle", ", ".join(
                f"{k} {v}×" for k, v in pm["speedup"].items()))
        if report["database"]:
            dbr = report["database"]
            table.add_row(f"{dbr['db']} ({dbr['leaves']:,} leaves)",
                          f"append {dbr['append']['leaves_per_s']:,.0f}/s, inclusion "
                          f"{dbr['inclusion']['generate']['mean_us']} µs")
        for key, value in report["invariants"].items():
            table.add_row(key, "[green]yes[/]" if value else "[red]NO[/]")
        err.print(table)
    typer.echo(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
    if not report["ok"]:
        raise typer.Exit(1)


@bench_app.command("summit")
def bench_summit(
    clients: Annotated[int, typer.Option(min=1, help="WebSocket clients (live attendees); "
                                                     "the first is the moderator.")] = 3_000,
    servers: Annotated[int, typer.Option(min=1, max=16, help="Server processes (more than one: "
                                                             "they meet through Redis).")] = 1,
    duration: Annotated[float, typer.Option(min=0, help="Seconds of load once all joined.")
                        ] = 30.0,
    chat_every: Annotated[float, typer.Option(help="Seconds between one person's chat "
                                                   "messages (mean; 0: none).")] = 120.0,
    ask_every: Annotated[float, typer.Option(help="Seconds between one person's questions "
                                                  "(mean; 0: none).")] = 600.0,
    upvote_every: Annotated[float, typer.Option(help="Seconds between one person's upvotes "
                                                     "(mean; 0: none).")] = 60.0,
    vote_share: Annotated[float, typer.Option(min=0, max=1, help="Share of the room that votes "
                                                                 "in the moderator's poll.")
                          ] = 0.5,
    connect_rate: Annotated[float, typer.Option(min=1, help="New connections per second, in "
                                                            "all.")] = 500.0,
    clients_per_process: Annotated[int, typer.Option(min=1, help="Clients per client "
                                                                 "process.")] = 1_000,
    deflate: Annotated[bool, typer.Option(help="Offer permessage-deflate, as browsers do.")
                       ] = True,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="An EMPTY database to use (default: a temporary SQLite file).",
        show_default=False)] = None,
    broker_url: Annotated[str | None, typer.Option(
        "--broker-url", help="The servers' broker (default: memory:// for one server, "
                             "redis://127.0.0.1:6379/0 for more).", show_default=False)] = None,
    keep_logs: Annotated[bool, typer.Option(help="Keep the temporary folder with the servers' "
                                                 "and clients' logs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
) -> None:
    """Live-room WebSocket clients against real server processes: join, chat, questions,
    upvotes, a poll; fan-out latency, failures and server memory. The last line is JSON."""
    from shanju.bench import summit as summit_bench

    progress = Progress(
        TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )
    labels = {"connecting": "Connecting + joining", "running": "Load (seconds)"}
    tasks: dict[str, TaskID] = {}

    def advance(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(labels.get(phase, phase), total=total)
        progress.update(tasks[phase], completed=done, total=total)

    load = summit_bench.Load(duration=duration, chat_every=chat_every, ask_every=ask_every,
                             upvote_every=upvote_every, vote_share=vote_share)
    err = Console(stderr=True)
    try:
        with progress:
            report = summit_bench.run(
                clients=clients, servers=servers, load=load, database_url=database_url,
                broker_url=broker_url, connect_rate=connect_rate,
                clients_per_process=clients_per_process, deflate=deflate,
                keep_logs=keep_logs, progress=advance,
                on_phase=lambda msg: progress.console.log(msg))
    except (RuntimeError, ValueError) as exc:
        err.print(f"[red]✗ {exc}[/]")
        raise typer.Exit(1) from exc
    if not as_json:
        err.print(
            f"{report['connected']:,}/{report['clients']:,} connected, {report['failed']} failed "
            f"· fan-out p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms · server RSS "
            f"{report['server_rss_mib']} MiB ({report['kib_per_connection']} KiB/connection) "
            f"· {report['servers']} server(s), {report['broker']} broker")
    typer.echo(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
    if not report["ok"]:
        raise typer.Exit(1)


# --- operators -----------------------------------------------------------------------------


@app.command()
def createuser(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[Role, typer.Option(help="The user's role.")] = Role.REVIEWER,
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                     help="Password (asked for when not given)."),
    ] = "",
    organization_id: Annotated[
        int | None, typer.Option(help="The organization of an org_staff user.")
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create a user, e.g. a platform reviewer or admin (who cannot sign themselves up)."""
    if role == Role.ORG_STAFF and organization_id is None:
        console.print("[red]An org_staff user needs --organization-id.[/]")
        raise typer.Exit(2)
    database = _database(database_url)
    try:
        with database.transaction() as session:
            normalized = accounts.check_signup(
                session=session, email=email, password=password, display_name=name
            )
            user = accounts.do_create_user(
                session=session, email=normalized, password=password, display_name=name,
                role=role, organization_id=organization_id,
            )
            user_id = user.id
    except DomainError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    finally:
        database.dispose()
    console.print(f"Created {role.value} #{user_id} <{normalized}>.")


if __name__ == "__main__":  # pragma: no cover
    app()
