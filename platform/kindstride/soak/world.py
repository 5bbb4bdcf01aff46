"""The soak's tenants (provisioned through the app's own services) and the consistency check at the end."""

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from kindstride.db import db, utcnow

PASSWORD = "soak password 2024"
CHALLENGE = "run"


@dataclass
class SoakTenant:
    slug: str
    host: str  # its custom domain: the soak reaches it as http://<host>:<port>
    tenant_id: int
    currency: str
    admin_email: str
    admin_token: str
    runner_tokens: list  # [(user id, token)]
    registered: set  # user ids registered in the challenge
    team_ids: list
    registration_ids: list
    donation_amount: int
    gateway: str | None


def provision(app, slug, host, currency, runners, gateway_settings=None, now=None):
    """Create (or find again) a tenant with a challenge, teams, an admin and runners, half of them registered."""
    from kindstride.accounts import services as accounts
    from kindstride.challenges import services as challenges
    from kindstride.fundraising.services import MINIMUM_DONATION, add_beneficiary
    from kindstride.tenancy.models import Tenant, TenantDomain
    from kindstride.tenancy.scope import tenant_scope
    from kindstride.tenancy.services import _set_domains, create_tenant, store_secret

    now = now or datetime.now(UTC)
    tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        tenant = create_tenant(slug, f"Soak {slug}", "en", currency, "Asia/Ho_Chi_Minh")
    owner = db.session.get(TenantDomain, host)
    if owner is None:
        _set_domains(tenant, [*(d.domain for d in tenant.domains), host])
    elif owner.tenant_id != tenant.id:
        raise RuntimeError(f"{host} already belongs to tenant {owner.tenant.slug}: the soak needs that address")
    if gateway_settings:
        tenant.settings = {**tenant.settings, "plugins": list(app.config["PLUGINS"]),
                           "gateways": {"vnpay": {"tmn_code": gateway_settings["tmn_code"]}}}
    db.session.commit()
    with tenant_scope(tenant.id):
        if gateway_settings:
            store_secret("gateway.vnpay.hash_secret", gateway_settings["hash_secret"])
        challenge = challenges.get_challenge(CHALLENGE)
        if challenge is None:
            challenge = challenges.create_challenge({
                "slug": CHALLENGE, "title": f"Soak run {slug}", "sports": ["run"], "divisions": ["North", "South"],
                "goal_km": 100_000, "preset": "vn-charity-run-2024",
                "registration_opens_at": (now - timedelta(days=10)).isoformat(),
                "registration_closes_at": (now + timedelta(days=10)).isoformat(),
                "counting_start": (now - timedelta(days=5)).isoformat(),
                "counting_end": (now + timedelta(days=10)).isoformat()})
            divisions = challenges.divisions_of(challenge)
            for number in range(8):
                challenges.create_team(challenge, f"Team {number + 1}", divisions[number % 2].id)
            add_beneficiary(challenge, {"name": "Children's Heart Fund"})
        teams = db.session.scalars(sa.select(challenges.Team.id).where(challenges.Team.challenge_id == challenge.id)
                                   .order_by(challenges.Team.id)).all()
        run_id = secrets.token_hex(3)
        admin = accounts.sign_up(f"admin-{run_id}@{slug}.soak", "Soak admin", PASSWORD)
        admin.email_confirmed_at = utcnow()
        for role in ("admin", "moderator", "sponsor"):
            accounts.grant_role(admin, role)
        _record, admin_token = accounts.create_api_token(admin, "soak admin", list(accounts.API_SCOPES), 2)
        tokens, registered, registrations = [], set(), []
        for number in range(runners):
            user = accounts.sign_up(f"runner{number}-{run_id}@{slug}.soak", f"Runner {number}", PASSWORD)
            user.email_confirmed_at = utcnow()
            _record, token = accounts.create_api_token(user, "soak", ["read", "activities:write"], 2)
            tokens.append((user.id, token))
            if number % 2 == 0:
                registration = challenges.register(challenge, user, {"team_id": teams[number % len(teams)]})
                registered.add(user.id)
                registrations.append(registration.id)
        db.session.commit()
        minimum = MINIMUM_DONATION.get(currency, 100)
        return SoakTenant(slug=slug, host=host, tenant_id=tenant.id, currency=currency, admin_email=admin.email,
                          admin_token=admin_token, runner_tokens=tokens, registered=registered, team_ids=list(teams),
                          registration_ids=registrations, donation_amount=minimum * 5,
                          gateway="vnpay" if gateway_settings else None)


@dataclass
class Expected:
    """What the load did, as the soak saw it, per tenant: to compare with the database at the end."""

    activity_ids: set = field(default_factory=set)
    payments: dict = field(default_factory=dict)  # reference -> (gateway ref, amount)


def consistency(app, tenant, expected, vnpay=None):
    """Every check at the end of a soak for one tenant: a list of (check, ok, detail)."""
    from kindstride.activities.evaluation import reevaluate_challenge, resolved_ruleset
    from kindstride.activities.models import Activity, ActivityResult
    from kindstride.challenges.models import Challenge, Registration
    from kindstride.leaderboards.models import ParticipantTotal, TeamTotal
    from kindstride.ledger.models import LedgerEntry, LedgerTransaction
    from kindstride.ledger.services import problems
    from kindstride.payments.models import Payment
    from kindstride.tenancy.scope import tenant_scope

    checks = []
    with app.app_context(), tenant_scope(tenant.tenant_id):
        ledger = problems()
        checks.append(("ledger: every transaction balances", not ledger, "; ".join(ledger[:3]) or "0 problems"))

        runners = [user_id for user_id, _token in tenant.runner_tokens]
        stored = set(db.session.scalars(sa.select(Activity.id).where(Activity.user_id.in_(runners))))
        lost, extra = expected.activity_ids - stored, stored - expected.activity_ids
        checks.append(("activities: none lost, none doubled", not lost and not extra,
                       f"{len(expected.activity_ids)} acknowledged, {len(stored)} stored, {len(lost)} lost, "
                       f"{len(extra)} unexpected"))

        challenge = db.session.scalar(sa.select(Challenge).where(Challenge.slug == CHALLENGE))
        active = set(db.session.scalars(sa.select(Registration.user_id).where(
            Registration.challenge_id == challenge.id, Registration.status == "active")))
        judged = set(db.session.scalars(sa.select(ActivityResult.activity_id).where(
            ActivityResult.challenge_id == challenge.id)))
        # Activities starting over a week before the counting window are none of the challenge's business.
        horizon = challenge.counting_start - timedelta(days=7)
        unjudged = [a for a, user in db.session.execute(sa.select(Activity.id, Activity.user_id)
                                                        .where(Activity.start >= horizon))
                    if user in active and a not in judged]
        checks.append(("activities: every one of a registered runner is judged", not unjudged,
                       f"{len(unjudged)} not judged"))

        strategy, params = resolved_ruleset(challenge).team_aggregation
        participants = {row.registration_id: (row.score, row.distance_m, row.team_id) for row in db.session.scalars(
            sa.select(ParticipantTotal).where(ParticipantTotal.challenge_id == challenge.id))}
        sums = dict(db.session.execute(
            sa.select(ActivityResult.registration_id, sa.func.sum(ActivityResult.score))
            .where(ActivityResult.challenge_id == challenge.id).group_by(ActivityResult.registration_id)).all())
        wrong = [r for r, (score, _d, _t) in participants.items() if score != int(sums.get(r) or 0)]
        teams = {row.team_id: row.score for row in db.session.scalars(
            sa.select(TeamTotal).where(TeamTotal.challenge_id == challenge.id))}
        wrong_teams = [t for t, score in teams.items()
                       if score != (strategy.aggregate([p[0] for p in participants.values() if p[2] == t], params)
                                    if any(p[2] == t for p in participants.values()) else 0)]
        before = (participants, teams)
        reevaluate_challenge(challenge.id, challenge.ruleset_version)
        db.session.flush()
        after = ({row.registration_id: (row.score, row.distance_m, row.team_id) for row in db.session.scalars(
            sa.select(ParticipantTotal).where(ParticipantTotal.challenge_id == challenge.id))},
            {row.team_id: row.score for row in db.session.scalars(
                sa.select(TeamTotal).where(TeamTotal.challenge_id == challenge.id))})
        db.session.rollback()
        checks.append(("leaderboard: totals equal the sums of results", not wrong and not wrong_teams,
                       f"{len(participants)} participants, {len(teams)} teams, {len(wrong)} + {len(wrong_teams)} off"))
        checks.append(("leaderboard: judging everything again changes nothing", before == after,
                       "identical" if before == after else "differs"))

        payments = {p.reference: p for p in db.session.scalars(sa.select(Payment))}
        captured = dict(db.session.execute(
            sa.select(LedgerTransaction.reference, sa.func.count()).where(
                LedgerTransaction.reference.like("payment:%:captured")).group_by(LedgerTransaction.reference)).all())
        doubled = [ref for ref, count in captured.items() if count != 1]
        succeeded = {ref for ref, p in payments.items() if p.status == "succeeded"}
        credited = {ref.split(":")[1] for ref in captured}
        checks.append(("money: every succeeded payment credited exactly once",
                       succeeded == credited and not doubled,
                       f"{len(succeeded)} succeeded, {len(credited)} credited, {len(doubled)} doubled"))
        unknown = set(expected.payments) - set(payments)
        checks.append(("money: every donation the donors started is recorded", not unknown,
                       f"{len(expected.payments)} started, {len(unknown)} missing"))
        if vnpay is not None:
            paid_at_gateway = {ref for ref, (gateway_ref, _amount) in expected.payments.items()
                               if gateway_ref in vnpay.transactions and vnpay.transactions[gateway_ref].status == "00"}
            missing = paid_at_gateway - credited
            checks.append(("money: every payment the gateway took is credited", not missing,
                           f"{len(paid_at_gateway)} paid at the gateway, {len(missing)} not credited"))
        donated = -int(db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
                                         .where(LedgerEntry.account.startswith("donations:"))))
        expected_donated = sum(p.amount - p.refunded for p in payments.values() if p.status == "succeeded"
                               and p.purpose == "donation")
        checks.append(("money: donations in the ledger equal the succeeded payments", donated == expected_donated,
                       f"ledger {donated}, payments {expected_donated} {tenant.currency}"))
        db.session.rollback()
    return checks
