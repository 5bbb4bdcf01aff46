"""Keeping totals exact and reading leaderboards.

A participant's total is always recomputed from their own results, and a team's from its members'
totals, under a row lock: a total can never drift from its parts, and concurrent workers never lose
an update. Ranking order: higher score, then who reached it first (the end of their last counted
activity), then the lower bib or team id.
"""

from dataclasses import dataclass

import sqlalchemy as sa

from kindstride.activities.models import ActivityResult
from kindstride.challenges.models import Registration, Team
from kindstride.db import db
from kindstride.leaderboards import ranking
from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
from kindstride.tenancy.scope import require_tenant_id

AGE_GROUPS = {"u20": (0, 19), "20-29": (20, 29), "30-39": (30, 39), "40-49": (40, 49), "50-59": (50, 59),
              "60+": (60, 200)}
PAGE_SIZE = 50


def ensure_participant_total(registration):
    total = ParticipantTotal(challenge_id=registration.challenge_id, registration_id=registration.id,
                             bib=registration.bib, team_id=registration.team_id)
    db.session.add(total)
    db.session.flush()
    ranking.mark_changed(total)


def ensure_team_total(team):
    db.session.add(TeamTotal(challenge_id=team.challenge_id, team_id=team.id, division_id=team.division_id))
    db.session.flush()


def refresh_participant(registration_id, team_aggregation=None):
    """Recompute one participant's total from their results, then their team's."""
    total = db.session.scalar(sa.select(ParticipantTotal).where(ParticipantTotal.registration_id == registration_id)
                              .with_for_update())
    score, distance, count, reached = db.session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(ActivityResult.score), 0),
                  sa.func.coalesce(sa.func.sum(ActivityResult.counted_distance_m), 0),
                  sa.func.count(ActivityResult.counted_at),
                  sa.func.max(ActivityResult.counted_at))
        .where(ActivityResult.registration_id == registration_id)
    ).one()
    total.score, total.distance_m, total.activities, total.reached_at = int(score), int(distance), count, reached
    total.version = (total.version or 0) + 1
    db.session.flush()
    ranking.mark_changed(total)
    if total.team_id is not None and team_aggregation is not None:
        refresh_team(total.team_id, team_aggregation)
    return total


def refresh_participants(registration_ids):
    """refresh_participant (without the team) for many registrations at once: one UPDATE from the sums of their
    results. Returns {registration id: team id}. Registrations without any result are done one by one."""
    ids = sorted(set(registration_ids))
    if not ids:
        return {}
    tenant_id = require_tenant_id()
    sums = (sa.select(ActivityResult.registration_id,
                      sa.func.coalesce(sa.func.sum(ActivityResult.score), 0).label("score"),
                      sa.func.coalesce(sa.func.sum(ActivityResult.counted_distance_m), 0).label("distance_m"),
                      sa.func.count(ActivityResult.counted_at).label("activities"),
                      sa.func.max(ActivityResult.counted_at).label("reached_at"))
            .where(ActivityResult.tenant_id == tenant_id, ActivityResult.registration_id.in_(ids))
            .group_by(ActivityResult.registration_id).subquery())
    rows = db.session.execute(
        sa.update(ParticipantTotal)
        .where(ParticipantTotal.tenant_id == tenant_id, ParticipantTotal.registration_id == sums.c.registration_id)
        .values(score=sums.c.score, distance_m=sums.c.distance_m, activities=sums.c.activities,
                reached_at=sums.c.reached_at, version=sa.func.coalesce(ParticipantTotal.version, 0) + 1)
        .returning(ParticipantTotal.tenant_id, ParticipantTotal.challenge_id, ParticipantTotal.registration_id,
                   ParticipantTotal.score, ParticipantTotal.reached_at, ParticipantTotal.bib,
                   ParticipantTotal.version, ParticipantTotal.team_id),
        execution_options={"synchronize_session": False}).all()
    ranking.mark_many_changed(rows)
    teams = {row.registration_id: row.team_id for row in rows}
    for obj in list(db.session.identity_map.values()):  # loaded totals of this session: read them again
        if type(obj) is ParticipantTotal and obj.registration_id in teams:
            db.session.expire(obj)
    for registration_id in ids:
        if registration_id not in teams:
            total = refresh_participant(registration_id)
            teams[registration_id] = total.team_id
    return teams


def refresh_team(team_id, team_aggregation):
    """Recompute a team's score from its members' totals with the ruleset's team aggregation."""
    strategy, params = team_aggregation
    team_total = db.session.scalar(sa.select(TeamTotal).where(TeamTotal.team_id == team_id).with_for_update())
    rows = db.session.execute(sa.select(ParticipantTotal.score, ParticipantTotal.distance_m,
                                        ParticipantTotal.reached_at)
                              .where(ParticipantTotal.team_id == team_id)).all()
    team_total.members = len(rows)
    team_total.score = strategy.aggregate([row.score for row in rows], params) if rows else 0
    team_total.distance_m = sum(row.distance_m for row in rows)
    team_total.reached_at = max((row.reached_at for row in rows if row.reached_at), default=None)
    db.session.flush()


# Team aggregations with an exact SQL form (the score from the members' count and sum); others run in Python.
SQL_TEAM_AGGREGATIONS = {
    "rules_plugins.core_rules.teams.SumAggregation": "s.total",
    "rules_plugins.core_rules.teams.AveragePerMember": "floor(s.total::numeric / s.members)::bigint",
}


def sql_team_aggregation(strategy):
    """The SQL expression of a team aggregation over (s.members, s.total), or None."""
    return SQL_TEAM_AGGREGATIONS.get(f"{type(strategy).__module__}.{type(strategy).__qualname__}")


def refresh_teams(aggregation_of):
    """refresh_team for many teams ({team id: team aggregation}). Their rows are locked first, in id order, so
    each UPDATE (whose snapshot is taken after the locks are held) sees every member total committed before it;
    then one UPDATE per aggregation with a SQL form, refresh_team for the others."""
    team_ids = sorted(aggregation_of)
    if not team_ids:
        return
    tenant_id = require_tenant_id()
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if not postgres:
        for team_id in team_ids:
            refresh_team(team_id, aggregation_of[team_id])
        return
    db.session.execute(sa.select(TeamTotal.team_id).where(TeamTotal.tenant_id == tenant_id,
                                                          TeamTotal.team_id.in_(team_ids))
                       .order_by(TeamTotal.team_id).with_for_update()).all()
    by_expression = {}
    for team_id in team_ids:
        expression = sql_team_aggregation(aggregation_of[team_id][0])
        if expression is None:
            refresh_team(team_id, aggregation_of[team_id])
        else:
            by_expression.setdefault(expression, []).append(team_id)
    for expression, ids in by_expression.items():
        update_team_totals(tenant_id, ids, expression)
    for obj in list(db.session.identity_map.values()):  # loaded team totals of this session: read them again
        if type(obj) is TeamTotal and obj.team_id in aggregation_of:
            db.session.expire(obj)


def update_team_totals(tenant_id, team_ids, expression):
    """One UPDATE of these teams' totals from their members' totals (PostgreSQL)."""
    db.session.execute(sa.text(f"""
        UPDATE team_totals tt
        SET members = s.members, score = {expression}, distance_m = s.distance_m, reached_at = s.reached_at
        FROM (SELECT team_id, count(*) AS members, coalesce(sum(score), 0) AS total,
                     coalesce(sum(distance_m), 0)::bigint AS distance_m, max(reached_at) AS reached_at
              FROM participant_totals
              WHERE tenant_id = :tenant AND team_id = ANY(:teams)
              GROUP BY team_id) s
        WHERE tt.tenant_id = :tenant AND tt.team_id = s.team_id"""),  # noqa: S608 (a fixed expression)
        {"tenant": tenant_id, "teams": team_ids})


def move_participant(challenge, registration, new_team_id, reset_from=None):
    """Change a participant's team; with reset_from, activities before it stop counting."""
    from kindstride.activities.evaluation import reevaluate_registration, resolved_ruleset

    old_team_id = registration.team_id
    registration.team_id = new_team_id
    db.session.execute(sa.update(ParticipantTotal).where(ParticipantTotal.registration_id == registration.id)
                       .values(team_id=new_team_id))
    if reset_from is not None:
        registration.counts_from = reset_from
        reevaluate_registration(challenge, registration)
    ruleset = resolved_ruleset(challenge)
    if ruleset is not None:
        refresh_participant(registration.id, ruleset.team_aggregation)
        if old_team_id is not None:
            refresh_team(old_team_id, ruleset.team_aggregation)


@dataclass(frozen=True)
class Row:
    rank: int
    id: int  # registration id or team id
    name: str
    bib: int | None
    score: int
    distance_m: int
    activities: int | None
    team: str | None
    team_id: int | None = None  # a participant's team, for a link to its page


def _participant_order():
    return (ParticipantTotal.score.desc(), ParticipantTotal.reached_at.asc().nulls_last(), ParticipantTotal.bib)


def _participant_filters(challenge, gender=None, age_group=None):
    conditions = [ParticipantTotal.challenge_id == challenge.id]
    if gender:
        conditions.append(Registration.gender == gender)
    if age_group in AGE_GROUPS:
        youngest, oldest = AGE_GROUPS[age_group]
        year = challenge.counting_start.year
        conditions.append(Registration.birth_year.between(year - oldest, year - youngest))
    return conditions


def individual_board(challenge, page=1, gender=None, age_group=None, search=None, team_id=None):
    conditions = _participant_filters(challenge, gender, age_group)
    if team_id is not None:
        conditions.append(ParticipantTotal.team_id == team_id)
    if not search:
        return _board_page(conditions, page, filtered=bool(gender or age_group in AGE_GROUPS))
    ranked = (
        sa.select(ParticipantTotal, Registration.display_name, Team.name.label("team_name"),
                  sa.func.row_number().over(order_by=_participant_order()).label("rank"))
        .join(Registration, Registration.id == ParticipantTotal.registration_id)
        .outerjoin(Team, Team.id == ParticipantTotal.team_id)
        .where(*conditions)
    ).subquery()
    query = sa.select(ranked)
    if search:
        term = search.strip()
        if term.isdigit():
            # A bib is an int; a longer string of digits can match no one (and would overflow the column).
            query = query.where(ranked.c.bib == int(term)) if len(term) <= 9 else query.where(sa.false())
        else:
            query = query.where(sa.func.lower(ranked.c.display_name).contains(term.lower(), autoescape=True))
    query = query.order_by(ranked.c.rank).limit(PAGE_SIZE).offset((max(page, 1) - 1) * PAGE_SIZE)
    return [Row(rank=r.rank, id=r.registration_id, name=r.display_name, bib=r.bib, score=r.score,
                distance_m=r.distance_m, activities=r.activities, team=r.team_name,
                team_id=r.team_id)
            for r in db.session.execute(query)]


def _board_page(conditions, page, filtered):
    """One page of the board, ranked by a window over the board order that stops at the page: the rank index
    feeds it in order, so the first pages cost the same whatever the number of participants."""
    order = _participant_order()
    ranked = (sa.select(ParticipantTotal.registration_id, ParticipantTotal.bib, ParticipantTotal.score,
                        ParticipantTotal.distance_m, ParticipantTotal.activities, ParticipantTotal.team_id,
                        sa.func.row_number().over(order_by=order).label("rank"))
              .where(*conditions))
    if filtered:
        ranked = ranked.join(Registration, Registration.id == ParticipantTotal.registration_id)
    ranked = ranked.order_by(*order).limit(PAGE_SIZE).offset((max(page, 1) - 1) * PAGE_SIZE).subquery()
    query = (sa.select(ranked, Registration.display_name, Team.name.label("team_name"))
             .join(Registration, Registration.id == ranked.c.registration_id)
             .outerjoin(Team, Team.id == ranked.c.team_id)
             .order_by(ranked.c.rank))
    return [Row(rank=r.rank, id=r.registration_id, name=r.display_name, bib=r.bib, score=r.score,
                distance_m=r.distance_m, activities=r.activities, team=r.team_name,
                team_id=r.team_id)
            for r in db.session.execute(query)]


def rank_of(challenge, registration, gender=None, age_group=None):
    """1-based rank of a registration on the (filtered) individual board."""
    mine = db.session.scalar(sa.select(ParticipantTotal).where(ParticipantTotal.registration_id == registration.id))
    if mine is None:
        return None
    if not gender and age_group not in AGE_GROUPS:
        rank = ranking.cached_rank(require_tenant_id(), mine)
        if rank is not None:
            return rank
    return _counted_rank(challenge, mine, gender, age_group)


def _counted_rank(challenge, mine, gender=None, age_group=None):
    """The rank counted in SQL: the participants ahead on the (filtered) board, plus one."""
    ahead = sa.or_(
        ParticipantTotal.score > mine.score,
        sa.and_(ParticipantTotal.score == mine.score,
                _reached_before(mine.reached_at),
                ),
        sa.and_(ParticipantTotal.score == mine.score, _reached_same(mine.reached_at),
                ParticipantTotal.bib < mine.bib),
    )
    query = sa.select(sa.func.count()).select_from(ParticipantTotal)
    if gender or age_group in AGE_GROUPS:
        query = query.join(Registration, Registration.id == ParticipantTotal.registration_id)
    # score >= mine bounds the index range the count walks; `ahead` then decides the ties.
    return db.session.scalar(query.where(*_participant_filters(challenge, gender, age_group),
                                         ParticipantTotal.score >= mine.score, ahead)) + 1


def _reached_before(reached_at):
    if reached_at is None:
        return ParticipantTotal.reached_at.is_not(None)
    return ParticipantTotal.reached_at < reached_at


def _reached_same(reached_at):
    if reached_at is None:
        return ParticipantTotal.reached_at.is_(None)
    return ParticipantTotal.reached_at == reached_at


def team_board(challenge, division_id=None, page=1):
    conditions = [TeamTotal.challenge_id == challenge.id]
    if division_id is not None:
        conditions.append(TeamTotal.division_id == division_id)
    query = (sa.select(TeamTotal, Team.name,
                       sa.func.row_number().over(order_by=(TeamTotal.score.desc(),
                                                           TeamTotal.reached_at.asc().nulls_last(),
                                                           TeamTotal.team_id)).label("rank"))
             .join(Team, Team.id == TeamTotal.team_id).where(*conditions)
             .order_by("rank").limit(PAGE_SIZE).offset((max(page, 1) - 1) * PAGE_SIZE))
    return [Row(rank=r.rank, id=r.TeamTotal.team_id, name=r.name, bib=None, score=r.TeamTotal.score,
                distance_m=r.TeamTotal.distance_m, activities=r.TeamTotal.members, team=None)
            for r in db.session.execute(query)]


@dataclass(frozen=True)
class ChallengeTotals:
    participants: int
    distance_m: int
    score: int
    activities: int


def challenge_totals(challenge) -> ChallengeTotals:
    participants, distance, score, activities = db.session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(ParticipantTotal.distance_m), 0),
                  sa.func.coalesce(sa.func.sum(ParticipantTotal.score), 0),
                  sa.func.coalesce(sa.func.sum(ParticipantTotal.activities), 0))
        .where(ParticipantTotal.challenge_id == challenge.id)
    ).one()
    return ChallengeTotals(participants, int(distance), int(score), int(activities))


def qualified_user_ids(challenge) -> set[int]:
    """Entrants of a multi-stage final: the top N per gender over a distance in each qualifier."""
    from kindstride.challenges.models import Challenge

    qualified = set()
    for rule in challenge.qualifiers:
        source = db.session.scalar(sa.select(Challenge).where(Challenge.slug == rule["challenge"]))
        if source is None:
            continue
        for gender in ("female", "male"):
            rows = db.session.execute(
                sa.select(Registration.user_id)
                .join(ParticipantTotal, ParticipantTotal.registration_id == Registration.id)
                .where(Registration.challenge_id == source.id, Registration.gender == gender,
                       ParticipantTotal.distance_m >= rule.get("min_distance_m", 0), ParticipantTotal.score > 0)
                .order_by(*_participant_order()).limit(rule["top_per_gender"])
            )
            qualified.update(row.user_id for row in rows)
    return qualified


def participant_total(registration) -> ParticipantTotal:
    # Already loaded in this session (rank_of loads it first): the query would hand back that same object, with
    # the same values, so skip the round trip.
    for obj in db.session.identity_map.values():
        if (type(obj) is ParticipantTotal and obj.__dict__.get("registration_id") == registration.id
                and not sa.inspect(obj).expired_attributes):
            return obj
    return db.session.scalar(sa.select(ParticipantTotal).where(ParticipantTotal.registration_id == registration.id))
