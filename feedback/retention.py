"""Retention: raw text older than the retention period is replaced by its scrubbed form (run it from cron).

Usage::

    python -m feedback.retention                    # the configured period (AccessConfig.retention_days: 30)
    python -m feedback.retention --days 7 --dry-run # say what would change, change nothing

    # crontab: every night at 03:17
    17 3 * * *  cd /srv/oncoloop && ONCOLOOP_HOME=/srv/oncoloop/var .venv/bin/python -m feedback.retention

Questions, answers and error texts of messages, corrections of ratings, and reviewers' edited texts and
notes pass ``feedback.scrub.scrub`` once they are older than the period, and the row is marked
(``redacted_at``) so later runs skip it. Nothing else changes: every row, id, rating, review, model
version and timestamp stays, so exports, lineage and the online A/B figures still add up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass, field

from sqlalchemy import select

from core.errors import OncoLoopError, cli_command
from feedback.config import load_access_config
from feedback.db import Message, Rating, Review, Store, open_store, utcnow
from feedback.scrub import scrub

TEXT_COLUMNS = {Message: ("question", "answer", "error"), Rating: ("correction",), Review: ("edited_text", "note")}
BATCH = 500  # rows per transaction: a long run never holds the database for long, and resumes where it stopped


@dataclass
class RetentionReport:
    """What one run did (or, dry, would do), per table."""

    cutoff: dt.datetime
    dry_run: bool
    examined: dict[str, int] = field(default_factory=dict)  # rows past the period, not redacted before
    changed: dict[str, int] = field(default_factory=dict)  # of those, rows whose text held identifiers

    def summary(self) -> str:
        verb = "would replace" if self.dry_run else "replaced"
        tables = "; ".join(f"{t}: {self.examined[t]} row(s), {self.changed[t]} with identifiers"
                           for t in self.examined)
        return (f"retention: {verb} raw text older than {self.cutoff:%Y-%m-%d %H:%M} UTC by its scrubbed form "
                f"({tables}).")


def apply_retention(store: Store, days: int, dry_run: bool = False, now: dt.datetime | None = None
                    ) -> RetentionReport:
    """Scrub the free text of rows created more than ``days`` days before ``now``, once each.

    Raises:
        OncoLoopError: ``days`` below 1.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise OncoLoopError(f"the retention period must be a whole number of days, at least 1, not {days!r}.")
    now = now or utcnow()
    report = RetentionReport(now - dt.timedelta(days=days), dry_run)
    for table, columns in TEXT_COLUMNS.items():
        name = table.__tablename__
        report.examined[name] = report.changed[name] = 0
        after = 0
        while True:
            with store.session.begin() as s:
                rows = s.scalars(select(table).where(table.created_at < report.cutoff, table.redacted_at.is_(None),
                                                     table.id > after).order_by(table.id).limit(BATCH)).all()
                for row in rows:
                    raw = {c: getattr(row, c) for c in columns if getattr(row, c) is not None}
                    clean = {c: scrub(v) for c, v in raw.items()}
                    report.examined[name] += 1
                    report.changed[name] += clean != raw
                    if not dry_run:
                        for c, v in clean.items():
                            setattr(row, c, v)
                        row.redacted_at = now
            if len(rows) < BATCH:
                break
            after = rows[-1].id
    return report


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, help="the retention period (default: retention_days of "
                        "$ONCOLOOP_ACCESS_CONFIG, 30)")
    parser.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    args = parser.parse_args(argv)
    days = args.days if args.days is not None else load_access_config().retention_days
    report = apply_retention(open_store(), days, args.dry_run)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
