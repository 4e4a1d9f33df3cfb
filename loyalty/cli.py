"""The ``loyalty`` command line (SPEC §4): thin commands over the services."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import click

from loyalty.bootstrap import Loyalty, get_loyalty
from loyalty.logs import configure_logging
from loyalty.program import ProgramError
from loyalty.services.birthdays import run_birthdays
from loyalty.services.crosssell import run_scan
from loyalty.services.events import UnknownRefusedEvent, list_refused, replay_refused
from loyalty.services.importing import import_events
from loyalty.services.members import UnknownMember, show_member
from loyalty.services.outbox import dispatch
from loyalty.services.tags import sweep_tags
from loyalty.settings import get_settings
from loyalty.storage.db import database_url
from loyalty.storage.migrate import upgrade


def _loyalty() -> Loyalty:
    try:
        return get_loyalty()
    except ProgramError as error:
        raise click.ClickException(str(error)) from None


@click.group()
def main() -> None:
    """Loyalty tiers and cross-sell for shops on Zalo Mini Apps."""
    configure_logging()


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema."""
    upgrade(database_url(get_settings()))
    click.echo("database schema is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--miniapp", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Also serve this built member's page at /miniapp/.")
def serve(host: str, port: int, miniapp: Path | None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from loyalty.api import create_app
    from loyalty.logs import uvicorn_log_config

    uvicorn.run(create_app(_loyalty(), miniapp=miniapp), host=host, port=port,
                log_level="info", log_config=uvicorn_log_config())


@main.group()
def member() -> None:
    """Members."""


@member.command("show")
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="The member view as JSON.")
def member_show(customer_id: str, as_json: bool) -> None:
    """Show where a member stands."""
    loyalty = _loyalty()
    try:
        view = show_member(loyalty, customer_id)
    except UnknownMember:
        raise click.ClickException(f"no member {customer_id}") from None
    document = view.to_json(loyalty.zone)
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    click.echo(f"{customer_id}: {view.tier_name}, {view.points} points, "
               f"{view.total_spent:,} VND spent")
    if document["next_tier"]:
        click.echo(f"  {view.points_to_next_tier} points (about {view.spend_to_next_tier:,} "
                   f"VND) to {document['next_tier']['name']}")
    else:
        click.echo("  top tier")
    for line in view.benefits:
        click.echo(f"  - {line}")
    for tag in document["tags"]:
        click.echo(f"  tag {tag['name']} until {tag['expires_at']}")


@main.group()
def events() -> None:
    """Order events: import history, list and replay refused ones."""


@events.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes to import with, split by customer [default: one per CPU on "
                   "PostgreSQL, 1 on SQLite].")
def events_import(file: click.utils.LazyFile, jobs: int | None) -> None:
    """Bulk-load historical order events (JSON lines); no message is sent for the past."""
    loyalty = _loyalty()
    if jobs is None:
        # SQLite has one writer at a time: more processes would only wait for each other.
        jobs = 1 if loyalty.engine.dialect.name == "sqlite" else os.cpu_count() or 1
    report = import_events(loyalty, file, jobs=jobs)
    click.echo(f"read {report.read} events: " + ", ".join(
        f"{count} {outcome}" for outcome, count in sorted(report.outcomes.items())))
    for number, reason in report.refused:
        click.echo(f"line {number}: refused: {reason}", err=True)
    if report.refused:
        click.echo("refused events are kept: `loyalty events rejected` lists them", err=True)


@events.command("rejected")
@click.option("--all", "include_replayed", is_flag=True, help="Also those already replayed.")
def events_rejected(include_replayed: bool) -> None:
    """List refused events, with their reasons."""
    rows = list_refused(_loyalty(), include_replayed=include_replayed)
    for row in rows:
        replayed = f"  replayed: {row.replay_outcome}" if row.replayed_at else ""
        click.echo(f"{row.id}\t{row.created_at.isoformat(timespec='seconds')}\t{row.source}\t"
                   f"{row.event_id or '-'}\t{row.reason}{replayed}")
    click.echo(f"{len(rows)} refused event(s)", err=True)


@events.command("replay")
@click.argument("refused_id", type=int)
def events_replay(refused_id: int) -> None:
    """Apply a refused event again."""
    try:
        applied = replay_refused(_loyalty(), refused_id)
    except UnknownRefusedEvent:
        raise click.ClickException(f"no refused event {refused_id}") from None
    click.echo(f"refused event {refused_id}: {applied.outcome}")
    if applied.outcome == "refused":
        sys.exit(1)


def _as_of(value: str | None) -> datetime:
    if value is None:
        return _loyalty().clock()
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise click.BadParameter("needs an offset, e.g. 2026-11-23T09:00:00+07:00",
                                 param_hint="--as-of")
    return moment


AS_OF = click.option("--as-of", "as_of", default=None,
                     help="ISO-8601 time with offset that stands for 'now'.")


@main.group()
def crosssell() -> None:
    """The near-tier cross-sell campaign."""


@crosssell.command("run")
@AS_OF
@click.option("--dry-run", is_flag=True, help="Only count who would be nudged.")
def crosssell_run(as_of: str | None, dry_run: bool) -> None:
    """The daily near-tier scan, now."""
    report = run_scan(_loyalty(), _as_of(as_of), dry_run=dry_run)
    if not dry_run:
        dispatch(_loyalty(), report.queued)
    click.echo(f"selected {report.selected}, queued {len(report.queued)}, "
               f"skipped unreachable {report.unreachable}, "
               f"over the monthly cap {report.over_monthly_cap}, "
               f"no contact within {_loyalty().program.channels.contact_months} months "
               f"{report.no_recent_contact}" + (" (dry run)" if dry_run else ""))


@main.group()
def tags() -> None:
    """Member tags."""


@tags.command("sweep")
@AS_OF
def tags_sweep(as_of: str | None) -> None:
    """Clear tags whose time is up."""
    cleared = sweep_tags(_loyalty(), _as_of(as_of))
    click.echo(f"cleared {len(cleared)} tag(s)")


@main.group()
def birthdays() -> None:
    """Birthday gifts."""


@birthdays.command("run")
@AS_OF
def birthdays_run(as_of: str | None) -> None:
    """The birthday job, now."""
    report = run_birthdays(_loyalty(), _as_of(as_of))
    dispatch(_loyalty(), report.queued)
    click.echo(f"birthdays today {report.celebrated}, gifts queued {len(report.queued)}, "
               f"skipped (gift within 365 days) {report.skipped_recent_gift}, "
               f"unreachable {report.unreachable}, over Zalo's caps {report.capped}")


@main.command()
@click.option("--customers", default=60, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--serve", is_flag=True,
              help="Then keep the API up on localhost with the member's page, signed in as "
                   "one of the demo's members through a fake Zalo, until Ctrl-C.")
@click.option("--port", default=8000, show_default=True, type=int, help="The port of --serve.")
def demo(customers: int, workers: int, serve: bool, port: int) -> None:
    """Run a shop's orders through real Celery workers on embedded defaults."""
    from loyalty.demo import run_demo

    run_demo(Path.cwd() / ".loyalty" / "demo", customers=customers, workers=workers,
             serve_port=port if serve else None)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The counters as JSON.")
def stats(as_json: bool) -> None:
    """Counters for ops (events, points, members per tier), across all workers."""
    from loyalty.services.stats import read_stats, stats_json

    counters = read_stats(_loyalty())
    if as_json:
        click.echo(json.dumps(stats_json(counters), indent=2))
        return
    for counts in counters:
        click.echo(f"{counts.description}:")
        width = max((len(key) for key in counts.values), default=0)
        for key, number in counts.values.items():
            click.echo(f"  {key:<{width}}  {number:>12,}")
