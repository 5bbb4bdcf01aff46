"""A generated event at a chosen size: a tenant, a 24-day charity run, teams in three divisions, participants,
and activities with the mix a real event gets (valid and invalid paces, duplicate recordings, re-uploads,
manual entries, late syncs, a rush on the last day).

Everything is seeded, so two runs of the same scale generate the same event. People, teams and totals are
written set-based (the bench measures imports and reads, not sign-ups); the few accounts that call the API
get real API tokens through the ordinary service.
"""

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kindstride.activities.bulk import ActivityRow
from kindstride.db import db

TIMEZONE = "Asia/Ho_Chi_Minh"
DIVISIONS = ["Company", "Sports Club", "School"]
PRESET = "vn-charity-run-2024"
EVENT_DAYS = 24
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
          "Dương", "Lý"]
GIVEN = ["An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng", "Hương", "Khánh", "Lan",
         "Linh", "Long", "Mai", "Minh", "Nam", "Ngọc", "Phong", "Phương", "Quân", "Quỳnh", "Sơn", "Tâm", "Thảo",
         "Thắng", "Trang", "Trung", "Tuấn", "Vy"]
JOIN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TOKEN_SCOPES = ["read", "activities:write"]


@dataclass
class Event:
    tenant_id: int
    slug: str  # the tenant's slug; the challenge's slug is CHALLENGE_SLUG
    challenge_id: int
    counting_start: datetime
    counting_end: datetime
    now: datetime
    user_ids: list  # by bib - 1
    team_of: list  # team id (or None) by bib - 1
    team_ids: list
    hot_team_id: int
    tokens: dict = field(default_factory=dict)  # user id -> API token


CHALLENGE_SLUG = "run"


def event_window(now):
    """A 24-day event whose last local day is today: counting from local midnight 23 days ago."""
    zone = ZoneInfo(TIMEZONE)
    today = now.astimezone(zone).date()
    start = datetime.combine(today - timedelta(days=EVENT_DAYS - 1), time(0), tzinfo=zone).astimezone(UTC)
    return start, start + timedelta(days=EVENT_DAYS)


def create_event(slug, participants, teams, now, seed=1, in_teams=0.9) -> Event:
    """The tenant, its challenge and its people (set-based). Must run in an app context; commits."""
    from kindstride.challenges import services as challenges
    from kindstride.tenancy.scope import tenant_scope
    from kindstride.tenancy.services import create_tenant

    rnd = random.Random(seed)
    tenant = create_tenant(slug, f"Bench {slug}", "vi", "VND", TIMEZONE)
    counting_start, counting_end = event_window(now)
    with tenant_scope(tenant.id):
        challenge = challenges.create_challenge({
            "slug": CHALLENGE_SLUG, "title": "Chạy vì trái tim", "sports": ["run"], "timezone": TIMEZONE,
            "registration_opens_at": (counting_start - timedelta(days=30)).isoformat(),
            "registration_closes_at": counting_end.isoformat(),
            "counting_start": counting_start.isoformat(), "counting_end": counting_end.isoformat(),
            "goal_km": 5_000_000, "divisions": DIVISIONS, "preset": PRESET,
        })
        divisions = [d.id for d in challenges.divisions_of(challenge)]
        team_ids = _insert_teams(tenant.id, challenge.id, divisions, teams, rnd)
        user_ids = _insert_users(tenant.id, slug, participants)
        team_of = _team_assignment(participants, team_ids, rnd, in_teams)
        _insert_registrations(tenant.id, challenge.id, user_ids, team_of, rnd)
        db.session.commit()
        return Event(tenant.id, slug, challenge.id, counting_start, counting_end, now, user_ids, team_of, team_ids,
                     hot_team_id=team_ids[0] if team_ids else None)


def _execute(sql, **params):
    return db.session.execute(sa.text(sql), params)


def _insert_teams(tenant_id, challenge_id, divisions, count, rnd):
    if not count:
        return []
    salt = rnd.randrange(len(JOIN_ALPHABET) ** 3)
    codes = [_join_code(salt * 10**7 + n) for n in range(count)]
    _execute("""INSERT INTO teams (tenant_id, challenge_id, division_id, name, join_code, created_at)
                SELECT :tenant, :challenge, (CAST(:divisions AS bigint[]))[1 + (g - 1) % :ndivisions],
                       'Team ' || lpad(g::text, 5, '0'), (CAST(:codes AS text[]))[g], now()
                FROM generate_series(1, :n) g""",
             tenant=tenant_id, challenge=challenge_id, divisions=divisions, ndivisions=len(divisions), codes=codes,
             n=count)
    team_ids = list(_execute("SELECT id FROM teams WHERE tenant_id = :t AND challenge_id = :c ORDER BY id",
                             t=tenant_id, c=challenge_id).scalars())
    _execute("""INSERT INTO team_totals (tenant_id, challenge_id, team_id, division_id, members, score, distance_m)
                SELECT tenant_id, challenge_id, id, division_id, 0, 0, 0 FROM teams
                WHERE tenant_id = :t AND challenge_id = :c""", t=tenant_id, c=challenge_id)
    return team_ids


def _join_code(number):
    digits = []
    for _ in range(8):
        number, digit = divmod(number, len(JOIN_ALPHABET))
        digits.append(JOIN_ALPHABET[digit])
    return "".join(digits)


def _insert_users(tenant_id, slug, count):
    _execute("""INSERT INTO users (tenant_id, email, name, is_disabled, session_version, created_at,
                                   email_confirmed_at)
                SELECT :tenant, 'runner' || g || '@' || :slug || '.example',
                       (CAST(:family AS text[]))[1 + g % :nfamily] || ' '
                         || (CAST(:given AS text[]))[1 + (g * 7) % :ngiven] || ' ' || g,
                       false, 1, now(), now()
                FROM generate_series(1, :n) g""",
             tenant=tenant_id, slug=slug, family=FAMILY, given=GIVEN, nfamily=len(FAMILY), ngiven=len(GIVEN), n=count)
    user_ids = list(_execute("SELECT id FROM users WHERE tenant_id = :t ORDER BY id", t=tenant_id).scalars())
    _execute("INSERT INTO user_roles (tenant_id, user_id, role) SELECT tenant_id, id, 'participant' FROM users "
             "WHERE tenant_id = :t", t=tenant_id)
    return user_ids


def _team_assignment(participants, team_ids, rnd, in_teams):
    """Most people in a team, team sizes skewed (a few big companies, many small clubs)."""
    if not team_ids:
        return [None] * participants
    weights = [1 / (rank + 10) ** 0.8 for rank in range(len(team_ids))]
    shuffled = team_ids[:]
    rnd.shuffle(shuffled)
    shuffled.remove(team_ids[0])
    order = [team_ids[0], *shuffled]  # the hot team is a mid-sized one, not the biggest
    order[0], order[len(order) // 3] = order[len(order) // 3], order[0]
    picks = rnd.choices(order, weights=weights, k=participants)
    return [team if rnd.random() < in_teams else None for team in picks]


def _insert_registrations(tenant_id, challenge_id, user_ids, team_of, rnd):
    n = len(user_ids)
    genders = [rnd.choice(("female", "male", "male", "female", "other")) for _ in range(n)]
    years = [rnd.randint(1955, 2010) for _ in range(n)]
    _execute("""INSERT INTO registrations (tenant_id, challenge_id, user_id, team_id, bib, display_name, gender,
                                           birth_year, status, registered_at)
                SELECT :tenant, :challenge, r.user_id, r.team_id, r.bib, u.name, r.gender, r.birth_year, 'active',
                       now()
                FROM unnest(CAST(:users AS bigint[]), CAST(:teams AS bigint[]), CAST(:genders AS text[]),
                            CAST(:years AS int[])) WITH ORDINALITY AS r(user_id, team_id, gender, birth_year, bib)
                JOIN users u ON u.id = r.user_id AND u.tenant_id = :tenant""",
             tenant=tenant_id, challenge=challenge_id, users=user_ids, teams=team_of, genders=genders, years=years)
    _execute("""INSERT INTO participant_totals (tenant_id, challenge_id, registration_id, bib, team_id, score,
                                                distance_m, activities)
                SELECT tenant_id, challenge_id, id, bib, team_id, 0, 0, 0 FROM registrations
                WHERE tenant_id = :t AND challenge_id = :c""", t=tenant_id, c=challenge_id)
    _execute("SET LOCAL enable_nestloop = off")  # fresh rows, stale statistics: see activities.bulk
    _execute("""UPDATE team_totals tt SET members = s.members
                FROM (SELECT team_id, count(*) AS members FROM participant_totals
                      WHERE tenant_id = :t AND team_id IS NOT NULL GROUP BY team_id) s
                WHERE tt.tenant_id = :t AND tt.team_id = s.team_id""", t=tenant_id)
    _execute("SET LOCAL enable_nestloop = on")


def issue_tokens(event, user_ids, days=30):
    """Real API tokens (through the accounts service) for the accounts that call the API."""
    from kindstride.accounts.models import User
    from kindstride.accounts.services import create_api_token
    from kindstride.tenancy.scope import tenant_scope

    with tenant_scope(event.tenant_id):
        for user_id in user_ids:
            _record, token = create_api_token(db.session.get(User, user_id), "bench", TOKEN_SCOPES, days)
            event.tokens[user_id] = token
        db.session.commit()
    return [event.tokens[u] for u in user_ids]


# ------------------------------------------------------------------------------------------------ activities


def activity_rows(event, count, seed=2, first_number=0) -> list[ActivityRow]:
    """`count` activity rows over the event, in no particular order (the import orders them by receipt)."""
    rnd = random.Random(seed)
    zone = ZoneInfo(TIMEZONE)
    users = event.user_ids
    # How active people are: a long tail (a few run twice a day, most a few times, some never).
    weights = [rnd.lognormvariate(0, 1.1) for _ in users]
    cumulative = list(_accumulate(weights))
    day_weights = [1.0] * (EVENT_DAYS - 1) + [4.0]  # the rush on the last day
    latest = event.now - timedelta(hours=2)
    rows = []
    number = first_number
    while len(rows) < count:
        number += 1
        user = rnd.choices(users, cum_weights=cumulative)[0]
        day = rnd.choices(range(EVENT_DAYS), weights=day_weights)[0]
        start = _start_time(rnd, event.counting_start, day, zone)
        if rnd.random() < 0.01:
            start = event.counting_start - timedelta(hours=rnd.uniform(2, 140))  # before the window
        row = _activity(rnd, user, start, number)
        if row.received_at > event.now or start + timedelta(seconds=row.elapsed_s) > latest:
            continue
        rows.append(row)
        roll = rnd.random()
        if roll < 0.04 and len(rows) < count:  # the same run recorded by a second device or app
            rows.append(_second_recording(rnd, row, number))
        elif roll < 0.045 and len(rows) < count:  # the same file uploaded again
            rows.append(row._replace(received_at=row.received_at + timedelta(minutes=rnd.uniform(1, 600))))
    return [r for r in rows if r.received_at <= event.now]


def _accumulate(weights):
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def _start_time(rnd, counting_start, day, zone):
    local_day = counting_start.astimezone(zone).date() + timedelta(days=day)
    roll = rnd.random()
    if roll < 0.5:
        hour = rnd.uniform(4.5, 8)
    elif roll < 0.9:
        hour = rnd.uniform(16.5, 21)
    else:
        hour = rnd.uniform(0, 24)
    local = datetime.combine(local_day, time(0), tzinfo=zone) + timedelta(seconds=round(hour * 3600))
    return local.astimezone(UTC)


SOURCES = (("device", 0.35), ("strava", 0.40), ("app", 0.15), ("api", 0.05), ("manual", 0.05))
TITLES = ("Morning Run", "Evening Run", "Chạy bộ buổi sáng", "Chạy bộ buổi tối", "Long run", "Easy run")


def _activity(rnd, user, start, number):
    source = rnd.choices([s for s, _w in SOURCES], weights=[w for _s, w in SOURCES])[0]
    distance = min(45000.0, max(300.0, math.exp(rnd.gauss(math.log(4200), 0.55))))
    roll = rnd.random()
    if roll < 0.025:
        pace = rnd.uniform(150, 235)  # a ride recorded as a run
    elif roll < 0.045:
        pace = rnd.uniform(910, 1300)  # a walk
    else:
        pace = min(880.0, max(245.0, rnd.gauss(400, 70)))
    distance = round(distance, 1)
    moving = round(distance / 1000 * pace, 1)
    elapsed = round(moving * rnd.uniform(1.0, 1.15), 1)
    splits = ()
    if source in ("device", "strava", "app"):
        splits = [round(pace * (1 + rnd.gauss(0, 0.04)), 1) for _ in range(int(distance // 1000))]
        if splits and rnd.random() < 0.01:
            splits[rnd.randrange(len(splits))] = round(pace * 0.55, 1)  # a GPS jump: one impossible km
        splits = tuple(splits)
    delay = rnd.random()
    if delay < 0.7:
        delay_s = rnd.uniform(30, 3600)
    elif delay < 0.95:
        delay_s = rnd.uniform(3600, 86400)
    elif delay < 0.99:
        delay_s = rnd.uniform(86400, 70 * 3600)
    else:
        delay_s = rnd.uniform(73 * 3600, 120 * 3600)  # synced too late
    end = start + timedelta(seconds=elapsed)
    return ActivityRow(
        user_id=user, source=source, sport="run", start=start, elapsed_s=elapsed, moving_s=moving,
        distance_m=distance, fingerprint=hashlib.sha256(f"{source}|{user}|{number}".encode()).hexdigest(),
        received_at=end + timedelta(seconds=round(delay_s, 3)), title=rnd.choice(TITLES),
        has_gps=source in ("device", "strava", "app"), split_paces=splits,
        external_id=str(number) if source == "strava" else None,
    )


def _second_recording(rnd, row, number):
    source = rnd.choice([s for s in ("device", "strava", "app") if s != row.source])
    shift = timedelta(seconds=rnd.uniform(-40, 40))
    return row._replace(
        source=source, start=row.start + shift, distance_m=round(row.distance_m * rnd.uniform(0.99, 1.01), 1),
        fingerprint=hashlib.sha256(f"{source}|{row.user_id}|{number}|second".encode()).hexdigest(),
        received_at=row.received_at + timedelta(seconds=rnd.uniform(-600, 3600)),
        has_gps=True, split_paces=row.split_paces or (), external_id=str(number) if source == "strava" else None,
    )
