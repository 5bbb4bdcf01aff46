"""Creating challenges, versioning their rulesets, registering people and managing teams."""

import secrets

import sqlalchemy as sa
from marshmallow import ValidationError

from kindstride import audit
from kindstride.challenges import rulesets
from kindstride.challenges.models import (
    OPEN,
    SWITCH_LOCKED,
    SWITCH_RESET,
    Challenge,
    Division,
    Registration,
    RulesetVersion,
    Team,
)
from kindstride.challenges.schemas import ChallengeSchema, RegistrationSchema
from kindstride.db import db, utcnow
from kindstride.jobs import enqueue
from kindstride.tenancy.models import Tenant
from kindstride.tenancy.scope import require_tenant_id
from kindstride.tenancy.settings_schema import flatten_errors

JOIN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


class ChallengeError(ValueError):
    """A request about a challenge cannot be done; `errors` are 'field: message' lines."""

    def __init__(self, *errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def current_tenant() -> Tenant:
    return db.session.get(Tenant, require_tenant_id())


def load(schema, data):
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ChallengeError(*flatten_errors(error.messages)) from None


def create_challenge(data, created_by=None) -> Challenge:
    values = load(ChallengeSchema(), data)
    tenant = current_tenant()
    if db.session.scalar(sa.select(Challenge.id).where(Challenge.slug == values["slug"])):
        raise ChallengeError(f"slug: a challenge {values['slug']!r} already exists")
    ruleset = _initial_ruleset(values, tenant)
    _check_qualifiers(values["qualifiers"])
    challenge = Challenge(
        slug=values["slug"], title=values["title"], description=values["description"], status=OPEN,
        sports=values["sports"], timezone=values["timezone"] or tenant.timezone,
        registration_opens_at=values["registration_opens_at"], registration_closes_at=values["registration_closes_at"],
        counting_start=values["counting_start"], counting_end=values["counting_end"],
        goal_m=values["goal_km"] * 1000 if values["goal_km"] else None, team_size_cap=values["team_size_cap"],
        team_switch_policy=values["team_switch_policy"], allow_individual=values["allow_individual"],
        allow_teams=values["allow_teams"], qualifiers=values["qualifiers"], entry_fee_minor=values["entry_fee"],
    )
    db.session.add(challenge)
    db.session.flush()
    for position, name in enumerate(values["divisions"]):
        db.session.add(Division(challenge_id=challenge.id, name=name, position=position))
    _add_version(challenge, ruleset, "created", created_by)
    audit.record("challenge.created", "challenge", challenge.id, slug=challenge.slug)
    return challenge


def _initial_ruleset(values, tenant):
    if values["ruleset"] is not None:
        try:
            return rulesets.normalise_ruleset(values["ruleset"], tenant)
        except rulesets.RulesetError as error:
            raise ChallengeError(*(f"ruleset.{line}" for line in error.errors)) from None
    presets = rulesets.presets(tenant)
    if values["preset"] is None:
        raise ChallengeError(f"preset: choose a preset ({', '.join(sorted(presets))}) or send a ruleset")
    if values["preset"] not in presets:
        raise ChallengeError(f"preset: unknown preset {values['preset']!r} (choose from {', '.join(sorted(presets))})")
    ruleset = dict(presets[values["preset"]].ruleset)
    # The challenge's own sports narrow the preset's allowed sports.
    return rulesets.normalise_ruleset(_with_sports(ruleset, values["sports"]), tenant)


def _with_sports(ruleset, sports):
    validation = [dict(entry) for entry in ruleset.get("validation", [])]
    for entry in validation:
        if entry["rule"] == "allowed_sports":
            entry["params"] = {**entry.get("params", {}), "sports": sports}
            break
    else:
        validation.insert(0, {"rule": "allowed_sports", "params": {"sports": sports}})
    return {**ruleset, "validation": validation}


def _check_qualifiers(qualifiers):
    for index, qualifier in enumerate(qualifiers):
        if not db.session.scalar(sa.select(Challenge.id).where(Challenge.slug == qualifier["challenge"])):
            raise ChallengeError(f"qualifiers[{index}].challenge: no challenge {qualifier['challenge']!r} here")


def _add_version(challenge, ruleset, note, created_by):
    challenge.ruleset_version += 1
    challenge.scoring_frozen_reason = None
    db.session.add(RulesetVersion(challenge_id=challenge.id, version=challenge.ruleset_version, ruleset=ruleset,
                                  note=note[:500], created_by_id=created_by.id if created_by else None))
    db.session.flush()


def current_ruleset(challenge) -> dict:
    return db.session.scalar(sa.select(RulesetVersion.ruleset).where(
        RulesetVersion.challenge_id == challenge.id, RulesetVersion.version == challenge.ruleset_version))


def change_ruleset(challenge, ruleset, note, changed_by=None) -> RulesetVersion:
    """Save a new ruleset version and re-evaluate every activity of the challenge in a job."""
    from kindstride.activities.evaluation import reevaluate_challenge

    try:
        normalised = rulesets.normalise_ruleset(ruleset, current_tenant())
    except rulesets.RulesetError as error:
        raise ChallengeError(*(f"ruleset.{line}" for line in error.errors)) from None
    # Locked and read again: a save committed while this one waited has taken the next version number.
    db.session.refresh(challenge, with_for_update=True)
    _add_version(challenge, normalised, note or "changed", changed_by)
    audit.record("ruleset.changed", "challenge", challenge.id, version=challenge.ruleset_version, note=note)
    enqueue(reevaluate_challenge, challenge.id, challenge.ruleset_version, queue="low")
    return challenge


def get_challenge(slug) -> Challenge | None:
    return db.session.scalar(sa.select(Challenge).where(Challenge.slug == slug))


def divisions_of(challenge):
    return db.session.scalars(sa.select(Division).where(Division.challenge_id == challenge.id)
                              .order_by(Division.position)).all()


def registration_of(challenge, user) -> Registration | None:
    return db.session.scalar(sa.select(Registration).where(Registration.challenge_id == challenge.id,
                                                           Registration.user_id == user.id))


def register(challenge, user, data, now=None) -> Registration:
    """Enter a person in a challenge: alone, creating a team, joining a team, or with a group code."""
    from kindstride.leaderboards.services import ensure_participant_total

    values = load(RegistrationSchema(), data)
    now = now or utcnow()
    if not (challenge.registration_opens_at <= now < challenge.registration_closes_at):
        raise ChallengeError("challenge: registration is not open now")
    if challenge.qualifiers and not _qualified(challenge, user):
        raise ChallengeError("challenge: entry is by qualification only, and you have not qualified")
    # One registration at a time per challenge: bib numbers are allocated without gaps or clashes.
    db.session.execute(sa.select(Challenge.id).where(Challenge.id == challenge.id).with_for_update())
    if registration_of(challenge, user):
        raise ChallengeError("challenge: you are already registered")
    bib = (db.session.scalar(sa.select(sa.func.max(Registration.bib))
                             .where(Registration.challenge_id == challenge.id)) or 0) + 1
    registration = Registration(challenge_id=challenge.id, user_id=user.id, bib=bib, display_name=user.name,
                                gender=values["gender"], birth_year=values["birth_year"],
                                beneficiary_id=_beneficiary_of(challenge, values["beneficiary_id"]),
                                status="pending_payment" if challenge.entry_fee_minor else "active")
    db.session.add(registration)
    db.session.flush()
    team = _team_for(challenge, registration, values, user)
    if team is None and not challenge.allow_individual:
        raise ChallengeError("team_id: this challenge is for teams: join or create one")
    registration.team_id = team.id if team else None
    ensure_participant_total(registration)
    if team is not None:
        _refresh_team(challenge, team.id)
    audit.record("registration.created", "registration", registration.id, bib=bib, team_id=registration.team_id)
    return registration


def start_entry_fee(challenge, registration, user, values, return_url, notify_url):
    """Begin paying a registration's entry fee; the registration counts once the payment succeeds."""
    from kindstride.payments import services as payments

    if not values.get("gateway") or not values.get("idempotency_key"):
        raise ChallengeError("gateway: this challenge has an entry fee: choose how to pay (gateway and "
                             "idempotency_key)")
    try:
        payment, created = payments.start_payment(
            purpose="entry_fee", income_account=f"entry_fees:{challenge.id}", amount=challenge.entry_fee_minor,
            currency=current_tenant().currency, gateway_name=values["gateway"],
            idempotency_key=values["idempotency_key"], description=f"{challenge.title}: bib {registration.bib}",
            return_url=return_url, notify_url=notify_url, payer_email=user.email, locale=current_tenant().locale)
    except payments.PaymentError as error:
        raise ChallengeError(*error.errors) from None
    registration.payment_id = payment.id
    return payment, created


def _team_for(challenge, registration, values, user):
    if values["new_team"]:
        return create_team(challenge, values["new_team"], values["division_id"], captain=user)
    if values["join_code"]:
        team = db.session.scalar(sa.select(Team).where(Team.join_code == values["join_code"].strip().upper(),
                                                       Team.challenge_id == challenge.id))
        if team is None:
            raise ChallengeError("join_code: no team of this challenge has this code")
        return _check_room(challenge, team)
    if values["team_id"]:
        team = db.session.scalar(sa.select(Team).where(Team.id == values["team_id"],
                                                       Team.challenge_id == challenge.id))
        if team is None:
            raise ChallengeError("team_id: no such team in this challenge")
        return _check_room(challenge, team)
    return None


def _beneficiary_of(challenge, beneficiary_id):
    from kindstride.fundraising.models import Beneficiary

    if beneficiary_id is not None and db.session.scalar(sa.select(Beneficiary.id).where(
            Beneficiary.id == beneficiary_id, Beneficiary.challenge_id == challenge.id)) is None:
        raise ChallengeError("beneficiary_id: not a beneficiary of this challenge")
    return beneficiary_id


def _refresh_team(challenge, team_id):
    from kindstride.activities.evaluation import resolved_ruleset
    from kindstride.leaderboards.services import refresh_team

    ruleset = resolved_ruleset(challenge)
    if ruleset is not None:
        refresh_team(team_id, ruleset.team_aggregation)


def _check_room(challenge, team):
    if challenge.team_size_cap:
        # Locks the team row so two people cannot both take its last place.
        db.session.execute(sa.select(Team.id).where(Team.id == team.id).with_for_update())
        members = db.session.scalar(sa.select(sa.func.count()).select_from(Registration)
                                    .where(Registration.team_id == team.id))
        if members >= challenge.team_size_cap:
            raise ChallengeError(f"team_id: {team.name} is full ({challenge.team_size_cap} members)")
    return team


def create_team(challenge, name, division_id, captain=None) -> Team:
    from kindstride.leaderboards.services import ensure_team_total

    if not challenge.allow_teams:
        raise ChallengeError("new_team: this challenge has no teams")
    name = (name or "").strip()
    if not name:
        raise ChallengeError("new_team: a team needs a name")
    if db.session.scalar(sa.select(Team.id).where(Team.challenge_id == challenge.id, Team.name == name)):
        raise ChallengeError(f"new_team: a team called {name!r} already exists; join it or pick another name")
    divisions = divisions_of(challenge)
    if divisions and division_id not in {d.id for d in divisions}:
        raise ChallengeError("division_id: choose one of this challenge's divisions")
    team = Team(challenge_id=challenge.id, division_id=division_id if divisions else None, name=name,
                join_code="".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(8)),
                captain_id=captain.id if captain else None)
    db.session.add(team)
    db.session.flush()
    ensure_team_total(team)
    return team


def switch_team(challenge, registration, user, data, now=None) -> Registration:
    """Move to another team (or none), as the challenge's team-switch policy allows."""
    from kindstride.leaderboards.services import move_participant

    now = now or utcnow()
    values = load(RegistrationSchema(), data)
    started = now >= challenge.counting_start
    if started and challenge.team_switch_policy == SWITCH_LOCKED:
        raise ChallengeError("team_id: teams are locked since the challenge started")
    team = _team_for(challenge, registration, values, user)
    if team is None and not challenge.allow_individual:
        raise ChallengeError("team_id: this challenge is for teams: join or create one")
    new_team_id = team.id if team else None
    if new_team_id == registration.team_id:
        return registration
    reset = started and challenge.team_switch_policy == SWITCH_RESET
    move_participant(challenge, registration, new_team_id, reset_from=now if reset else None)
    audit.record("registration.team_switched", "registration", registration.id, team_id=new_team_id, reset=reset)
    return registration


def _qualified(challenge, user):
    from kindstride.leaderboards.services import qualified_user_ids

    return user.id in qualified_user_ids(challenge)
