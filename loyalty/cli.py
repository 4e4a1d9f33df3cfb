"""The ``loyalty`` command line (SPEC §4): thin commands over the services."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from pydantic import ValidationError

from loyalty.bootstrap import Loyalty, get_loyalty
from loyalty.logs import configure_logging
from loyalty.program import Program, ProgramError, program_document, program_toml, read_program_file
from loyalty.services.birthdays import run_birthdays
from loyalty.services.crosssell import run_scan
from loyalty.services.events import UnknownRefusedEvent, list_refused, replay_refused
from loyalty.services.importing import import_events
from loyalty.services.members import UnknownMember, show_member
from loyalty.services.outbox import dispatch
from loyalty.services.programs import (
    ChangeReport,
    InForce,
    adopt_configured,
    apply_program,
    program_in_force,
)
from loyalty.services.tags import sweep_tags
from loyalty.settings import get_settings
from loyalty.storage.db import database_url
from loyalty.storage.migrate import upgrade
from loyalty.storage.zalo_tokens import DbTokenStore, TokenKeyError


def _loyalty() -> Loyalty:
    try:
        return get_loyalty()
    except ProgramError as error:
        raise click.ClickException(str(error)) from None


@click.group()
def main() -> None:
    """Loyalty tiers and cross-sell for shops on Zalo Mini Apps."""
    configure_logging()
    try:
        get_settings()
    except ValidationError as error:
        raise click.ClickException(f"bad settings: {error}") from None


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema; put the configured program in force when it
    differs from the stored one."""
    upgrade(database_url(get_settings()))
    click.echo("database schema is up to date")
    loyalty = _loyalty()
    _report_change(adopt_configured(loyalty), loyalty.programs.configured.source)


# Exit status of `program check` and `program apply` for a file that cannot be used (click
# uses 2 for a command line it cannot read).
REFUSED = 1


@main.group()
def program() -> None:
    """The loyalty program: show the one in force, check a file, put one in force."""


def _read_or_refuse(file: Path) -> Program:
    try:
        return read_program_file(file)
    except ProgramError as error:
        click.echo(f"{file}: refused, nothing was changed", err=True)
        for key, why in error.problems:
            click.echo(f"  {key}: {why}", err=True)
        sys.exit(REFUSED)


def _origin(in_force: InForce, zone: ZoneInfo) -> str:
    if in_force.version is None or in_force.applied_at is None:
        return (f"no program stored yet: the configured one, from {in_force.source} "
                "(`loyalty db upgrade` records it)")
    applied = in_force.applied_at.astimezone(zone).isoformat(timespec="seconds")
    return f"program version {in_force.version}, in force since {applied}, from {in_force.source}"


def _report_change(report: ChangeReport, source: str) -> None:
    if report.unchanged:
        click.echo(f"program version {report.version} from {source} is in force already")
        return
    click.echo(f"program version {report.version} from {source} is in force: "
               f"{report.moved_up} member(s) moved up a tier, {report.moved_down} down")


@program.command("show")
@click.option("--json", "as_json", is_flag=True, help="As JSON, with where it came from.")
def program_show(as_json: bool) -> None:
    """The program in force, as a program file, and where it came from."""
    loyalty = _loyalty()
    in_force = program_in_force(loyalty)
    if as_json:
        click.echo(json.dumps({
            "version": in_force.version, "source": in_force.source,
            "applied_at": in_force.applied_at.astimezone(loyalty.zone).isoformat()
            if in_force.applied_at else None,
            "program": program_document(in_force.program)}, ensure_ascii=False, indent=2))
        return
    click.echo(f"# {_origin(in_force, loyalty.zone)}\n")
    click.echo(program_toml(in_force.program), nl=False)


@program.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def program_check(file: Path) -> None:
    """Check a program file without using it; every bad key is named (exit status 1)."""
    checked = _read_or_refuse(file)
    click.echo(f"{file}: a valid program; tiers " + ", ".join(
        f"{tier.code} from {tier.threshold} ×{tier.multiplier}" for tier in checked.tiers))


@program.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
def program_apply(file: Path) -> None:
    """Put the program in FILE in force: a new version, every member's tier re-evaluated
    under its thresholds. Points do not change; multipliers apply to credits from now on."""
    new = _read_or_refuse(file)
    loyalty = _loyalty()
    source = str(file.resolve())
    _report_change(apply_program(loyalty, new, source), source)
    if new != loyalty.programs.configured.program:
        click.echo(f"note: the configured program ({loyalty.programs.configured.source}) is "
                   "another one; `loyalty db upgrade` would put it back in force. Point "
                   "LOYALTY_PROGRAM_FILE at this file.", err=True)


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
    if report.held_out:
        click.echo(f"of the selected, held out {report.held_out}: no message, compared with "
                   "the nudged in `loyalty crosssell report`")


@crosssell.command("report")
@click.option("--from", "start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First campaign day (YYYY-MM-DD) [default: 29 days before --to].")
@click.option("--to", "end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last campaign day (YYYY-MM-DD) [default: today].")
@click.option("--json", "as_json", is_flag=True, help="The results as JSON (as the API).")
def crosssell_report(start: datetime | None, end: datetime | None, as_json: bool) -> None:
    """Did the nudge pay? The nudged against the held out, per campaign day."""
    from loyalty.campaign_table import format_report
    from loyalty.services.campaign_results import BadRange, campaign_results

    try:
        results = campaign_results(_loyalty(), start and start.date(), end and end.date())
    except BadRange as error:
        raise click.BadParameter(str(error), param_hint="--from") from None
    document = results.to_json()
    click.echo(json.dumps(document, ensure_ascii=False, indent=2) if as_json
               else format_report(document))


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


@main.group()
def zalo() -> None:
    """The Zalo OA token pair kept in the database."""


@zalo.command("rotate-key")
def zalo_rotate_key() -> None:
    """Encrypt the stored token pair again with the first key of LOYALTY_ZALO_TOKEN_KEYS."""
    loyalty = _loyalty()
    keys = loyalty.settings.token_keys()
    if not keys:
        raise click.ClickException("LOYALTY_ZALO_TOKEN_KEYS is not set")
    try:
        rotated = DbTokenStore(loyalty.sessions, keys).rotate()
    except TokenKeyError as error:
        raise click.ClickException(str(error)) from None
    click.echo("the stored Zalo token pair is now encrypted with the first key" if rotated
               else "no Zalo token pair is stored: nothing to encrypt")


@main.command()
@click.option("--customers", default=150, show_default=True)
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
