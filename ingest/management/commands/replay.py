from datetime import datetime, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime, parse_duration
from rich.console import Console
from rich.progress import Progress

from explainer.audit import CLI
from explainer.models import Tenant
from ingest.replay import http_sender, read_events, send_in_process, wait_and_report
from explainer.services import dead_letters_replay, traces_shed_replay


class Command(BaseCommand):
    help = ("Send recorded /ingest events (JSONL, one event per line, optional \"tenant\" key) through the ingest "
            "path, in process or over HTTP with --url; or re-run dead-lettered traces with --dead-letters, or "
            "traces shed by backpressure with --shed.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", type=Path)
        parser.add_argument("--tenant", help="tenant slug for lines without a \"tenant\" key")
        parser.add_argument("--url", help="post over HTTP to this base URL instead of in process")
        parser.add_argument("--api-key", help="API key for --url")
        parser.add_argument("--wait", action="store_true", help="wait for terminal states and print a summary")
        parser.add_argument("--timeout", type=float, default=300.0)
        parser.add_argument("--dead-letters", action="store_true",
                            help="re-run traces in the dead-letter table (quarantined ones are skipped)")
        parser.add_argument("--shed", action="store_true",
                            help="re-run traces backpressure shed (status shed); each decides its degradation afresh")
        parser.add_argument("--trace", help="with --dead-letters or --shed: only this trace id")
        parser.add_argument("--stage", help="with --dead-letters: only letters of this stage")
        parser.add_argument("--reason", help="with --dead-letters: only letters whose reason contains this text")
        parser.add_argument("--since", type=_since,
                            help="with --dead-letters or --shed: only letters (traces shed) since this ISO time or "
                                 "duration ago (e.g. 2h, 30m, 2026-11-28T08:00)")

    def handle(self, *args, files, tenant, url, api_key, wait, timeout, dead_letters, shed, trace, stage, reason,
               since, **options):
        console = Console(stderr=True)
        if shed:
            if dead_letters or files or stage or reason:
                raise CommandError("--shed takes only --trace and --since")
            replayed = traces_shed_replay(trace_id=trace, since=since)
            self.stdout.write(f"re-running {len(replayed)} shed traces")
            for shed_trace in replayed:
                self.stdout.write(f"  {shed_trace.tenant.slug}/{shed_trace.trace_id} ({shed_trace.error[:120]})")
            return
        if dead_letters:
            result = dead_letters_replay(trace_id=trace, stage=stage, reason=reason, since=since, actor=CLI)
            self.stdout.write(f"re-running {len(result.replayed)} dead-lettered traces")
            for letter in result.replayed:
                self.stdout.write(f"  {_name(letter)} (failed at {letter.stage or '?'}: {letter.reason[:120]})")
            if result.quarantined:
                self.stdout.write(f"skipped {len(result.quarantined)} quarantined traces (failed "
                                  f"DEAD_LETTER_MAX_REPLAYS times); re-run one from the admin after fixing it")
                for letter in result.quarantined:
                    self.stdout.write(f"  {_name(letter)} (failed at {letter.stage or '?'}: {letter.reason[:120]})")
            return
        if trace or stage or reason or since:
            raise CommandError("--trace, --stage, --reason and --since filter --dead-letters (--trace and --since "
                               "also --shed)")
        if not files:
            raise CommandError("give one or more JSONL files, or --dead-letters")
        if url and not api_key:
            raise CommandError("--url needs --api-key")
        if not tenant:
            raise CommandError("--tenant is required (the tenant whose traces these are)")
        if not Tenant.objects.filter(slug=tenant).exists():
            raise CommandError(f"no tenant '{tenant}'; create it with `manage.py create_tenant {tenant}`")
        events = list(read_events(files))
        send = http_sender(url, api_key) if url else (lambda event: send_in_process(event, tenant))
        trace_ids = list(dict.fromkeys(e.body.get("trace_id") for e in events))
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task("sending events", total=len(events))
            for event in events:
                try:
                    send(event)
                except Exception as exc:  # noqa: BLE001 - report which line failed and why
                    raise CommandError(f"{event.source}: {exc}") from None
                progress.advance(task)
        self.stdout.write(f"sent {len(events)} events for {len(trace_ids)} traces")
        if not wait:
            return
        outcomes = wait_and_report(tenant, trace_ids, timeout)
        if any(o.status != "complete" for o in outcomes):
            raise CommandError("not every trace completed")


def _name(letter) -> str:
    return f"{letter.trace.tenant.slug}/{letter.trace.trace_id}"


def _since(value: str) -> datetime:
    """An ISO 8601 time, or a duration ago: `90s`, `30m`, `2h`, `7d` (or Django's `HH:MM:SS`)."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return timezone.now() - timedelta(**{units[value[-1]]: int(value[:-1])})
    moment = parse_datetime(value)
    if moment is not None:
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
    duration = parse_duration(value)
    if duration is not None:
        return timezone.now() - duration
    raise ValueError(f"not an ISO time or a duration: {value!r}")
