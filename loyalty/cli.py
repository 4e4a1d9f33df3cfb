"""The ``loyalty`` command line (SPEC §4): thin commands over the services."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from loyalty.bootstrap import Loyalty, get_loyalty
from loyalty.logs import configure_logging
from loyalty.program import ProgramError
from loyalty.services.events import UnknownRefusedEvent, list_refused, replay_refused
from loyalty.services.importing import import_events
from loyalty.services.members import UnknownMember, show_member
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
def serve(host: str, port: int) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from loyalty.api import create_app

    uvicorn.run(create_app(_loyalty()), host=host, port=port, log_level="info")


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
    document = view.to_json(ZoneInfo(loyalty.settings.timezone))
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
def events_import(file: click.utils.LazyFile) -> None:
    """Bulk-load historical order events (JSON lines); no message is sent for the past."""
    report = import_events(_loyalty(), file)
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


@main.command()
@click.option("--customers", default=60, show_default=True)
@click.option("--workers", default=2, show_default=True)
def demo(customers: int, workers: int) -> None:
    """Run a shop's orders through real Celery workers on embedded defaults."""
    from loyalty.demo import run_demo

    run_demo(Path.cwd() / ".loyalty" / "demo", customers=customers, workers=workers)
