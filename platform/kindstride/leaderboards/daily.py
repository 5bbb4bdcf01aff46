"""Kilometres per day of a challenge, for its charts: the whole challenge's, and one participant's running total.

Sums of the stored verdicts (`ActivityResult.counted_distance_m` by `local_day`, the day in the challenge's
time zone), so the days add up to the totals the leaderboards show. Tenant-scoped like every ORM query.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa

from kindstride.activities.models import ActivityResult
from kindstride.db import db, utcnow

MAX_DAYS = 400  # a chart of more days than this shows the last ones


@dataclass(frozen=True)
class Day:
    day: date
    distance_m: int


def challenge_days(challenge, today=None) -> list[date]:
    """The challenge's days from the first counting day to today (or its last day, if that is earlier)."""
    zone = zoneinfo.ZoneInfo(challenge.timezone)
    first = challenge.counting_start.astimezone(zone).date()
    # counting_end is exclusive: an end at midnight does not add the next day.
    last = (challenge.counting_end - timedelta(microseconds=1)).astimezone(zone).date()
    today = today or utcnow().astimezone(zone).date()
    last = min(last, today)
    if last < first:
        return []
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _by_day(query, days) -> list[Day]:
    if not days:
        return []
    sums = {row.local_day: int(row.distance_m) for row in db.session.execute(
        query.where(ActivityResult.local_day >= days[0], ActivityResult.local_day <= days[-1])
        .group_by(ActivityResult.local_day))}
    return [Day(day, sums.get(day, 0)) for day in days]


def _daily_query():
    return sa.select(ActivityResult.local_day,
                     sa.func.coalesce(sa.func.sum(ActivityResult.counted_distance_m), 0).label("distance_m"))


def challenge_daily(challenge, today=None) -> list[Day]:
    """Counted metres per day of the whole challenge, every day from its start (zero on a day without any)."""
    return _by_day(_daily_query().where(ActivityResult.challenge_id == challenge.id), challenge_days(challenge, today))


def participant_daily(challenge, registration, today=None) -> list[Day]:
    """One participant's counted metres per day of the challenge."""
    return _by_day(_daily_query().where(ActivityResult.challenge_id == challenge.id,
                                        ActivityResult.registration_id == registration.id),
                   challenge_days(challenge, today))


def cumulative(days: list[Day]) -> list[int]:
    running, out = 0, []
    for day in days:
        running += day.distance_m
        out.append(running)
    return out
