"""Believable demo events for `kindstride demo`: challenges from the presets, hundreds of participants in
teams and divisions, thousands of activities judged by the real rules, pledges and donations in the ledger.

Seeded from a fixed random seed, so every demo looks the same; only run on tenants with no challenge yet.
"""

import hashlib
import random
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from kindstride.accounts.models import User, UserRole
from kindstride.accounts.passwords import hash_password
from kindstride.activities.evaluation import reevaluate_challenge
from kindstride.activities.models import Activity
from kindstride.challenges import services as challenges
from kindstride.challenges.models import Challenge
from kindstride.db import db, utcnow
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Donation
from kindstride.ledger.services import Posting, record
from kindstride.payments.models import Payment

VI_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô"]
VI_MIDDLE = ["Văn", "Thị", "Minh", "Thanh", "Ngọc", "Đức", "Hữu", "Quang", "Thu", "Bảo"]
VI_GIVEN = ["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng", "Hương", "Khánh",
            "Lan", "Linh", "Long", "Mai", "Minh", "Nam", "Nga", "Phúc", "Phương", "Quân", "Sơn", "Thảo", "Trang",
            "Tuấn", "Vy", "Yến", "Thắng"]
EN_GIVEN = ["Aisha", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jun", "Kavya", "Liam",
            "Maya", "Noah", "Olivia", "Priya", "Quinn", "Rafael", "Sofia", "Tariq", "Uma", "Victor", "Wei", "Zara"]
EN_FAMILY = ["Tan", "Lim", "Santos", "Reyes", "Kumar", "Wong", "Chen", "Garcia", "Nguyen", "Lee", "Ong", "Cruz"]


@dataclass(frozen=True)
class EventPlan:
    slug: str
    title: str
    description: str
    preset: str
    sports: tuple
    days: int
    goal_km: int
    divisions: tuple
    teams: tuple
    participants: int
    activities: int
    vietnamese: bool
    beneficiaries: tuple
    pledge_rate: int  # per km, minor units
    donation_amounts: tuple


PLANS = {
    "techrun": EventPlan(
        "chay-vi-tre-em-2026", "Chạy vì trẻ em vùng cao 2026",
        "24 ngày chạy bộ gây quỹ: mỗi km hợp lệ, nhà tài trợ đóng góp 1.000 đồng cho quỹ bạn chọn.",
        "vn-charity-run-2024", ("run",), 24, 50_000, ("Doanh nghiệp", "Câu lạc bộ", "Trường học"),
        ("TechViet Hà Nội", "TechViet Sài Gòn", "CLB Chạy Hồ Tây", "CLB Marathon Đà Nẵng", "ĐH Bách khoa",
         "THPT Chu Văn An", "Runners Cầu Giấy", "TechViet Đà Nẵng"),
        180, 1400, True, ("Quỹ Cơm có thịt", "Quỹ Ánh sáng học đường", "Quỹ Trái tim cho em"), 1000,
        (50_000, 100_000, 200_000, 500_000)),
    "greencross-hn": EventPlan(
        "moi-buoc-chan-mot-tam-long", "Mỗi bước chân, một tấm lòng",
        "56 ngày, 700.000 km, 7 tỷ đồng cho người yếu thế. Đi bộ, chạy: mỗi km đều được kiểm tra.",
        "humanitarian-56-day", ("run", "walk"), 56, 700_000, (),
        ("Chi hội Ba Đình", "Chi hội Hoàn Kiếm", "Chi hội Đống Đa", "Tình nguyện viên trẻ"),
        140, 1100, True, ("Người khuyết tật", "Nạn nhân thiên tai"), 10_000, (100_000, 200_000, 500_000)),
    "unisport": EventPlan(
        "move-together-2026", "Move Together 2026",
        "A month of running, walking and riding: faculties race for the scholarship fund.",
        "company-month", ("run", "walk", "ride"), 30, 20_000, ("Faculties",),
        ("Engineering", "Computer Science", "Business", "Medicine", "Arts & Design"),
        100, 700, False, ("Student scholarship fund",), 500, (100_000, 200_000)),
    "shopfast": EventPlan(
        "staff-step-challenge", "Staff Step Challenge",
        "Our month-long staff challenge: teams of up to 30, switching team after the start resets your km.",
        "company-month", ("run", "walk"), 30, 5_000, ("Offices",),
        ("Singapore HQ", "Jakarta", "Ho Chi Minh City", "Manila"),
        60, 400, False, ("Digital skills for small sellers",), 5, (1000, 2500, 5000)),
}


def _name(rng, vietnamese):
    if vietnamese:
        return f"{rng.choice(VI_FAMILY)} {rng.choice(VI_MIDDLE)} {rng.choice(VI_GIVEN)}"
    return f"{rng.choice(EN_GIVEN)} {rng.choice(EN_FAMILY)}"


def seed_event(tenant, password):
    """One event for this tenant, if it has none; returns a line for the demo's output."""
    plan = PLANS.get(tenant.slug)
    if plan is None or db.session.scalar(sa.select(Challenge.id).limit(1)) is not None:
        return None
    rng = random.Random(tenant.slug)
    now = utcnow().replace(microsecond=0)
    start = now - timedelta(days=plan.days - 5)
    challenge = challenges.create_challenge({
        "slug": plan.slug, "title": plan.title, "description": plan.description, "sports": list(plan.sports),
        "registration_opens_at": (start - timedelta(days=14)).isoformat(),
        "registration_closes_at": (start + timedelta(days=plan.days)).isoformat(),
        "counting_start": start.isoformat(), "counting_end": (start + timedelta(days=plan.days)).isoformat(),
        "goal_km": plan.goal_km, "divisions": list(plan.divisions), "team_size_cap": 30 if tenant.slug == "shopfast"
        else None, "team_switch_policy": "reset" if tenant.slug == "shopfast" else "free", "preset": plan.preset})
    divisions = challenges.divisions_of(challenge)
    teams = [challenges.create_team(challenge, name, divisions[index % len(divisions)].id if divisions else None)
             for index, name in enumerate(plan.teams)]
    beneficiaries = [fundraising.add_beneficiary(challenge, {"name": name}) for name in plan.beneficiaries]
    password_hash = hash_password(password)  # one hash for every demo runner: argon2 is slow on purpose
    users = []
    for number in range(plan.participants):
        user = User(email=f"runner{number + 1}@{tenant.slug}.example", name=_name(rng, plan.vietnamese),
                    password_hash=password_hash, email_confirmed_at=now)
        db.session.add(user)
        users.append(user)
    db.session.flush()
    db.session.add_all(UserRole(user_id=user.id, role="participant") for user in users)
    for user in users:
        team = rng.choice(teams) if rng.random() < 0.85 else None
        challenges.register(challenge, user, {"team_id": team.id if team else None,
                                              "gender": rng.choice(["female", "male"]),
                                              "birth_year": rng.randint(1965, 2006),
                                              "beneficiary_id": rng.choice(beneficiaries).id}, now=start)
    _seed_activities(challenge, plan, users, rng, start, now)
    db.session.flush()
    reevaluate_challenge(challenge.id, challenge.ruleset_version)
    _seed_money(tenant, challenge, plan, rng, beneficiaries)
    return f"  {tenant.slug}: {plan.participants} participants, {plan.activities} activities in '{plan.title}'"


def _seed_activities(challenge, plan, users, rng, start, now):
    days = max((now - start).days, 1)
    for number in range(plan.activities):
        user = rng.choice(users)
        sport = rng.choice(plan.sports)
        distance = round(rng.uniform(1.5, 16 if sport != "ride" else 45) * 1000)
        base_pace = {"run": rng.uniform(280, 480), "walk": rng.uniform(540, 900), "ride": rng.uniform(100, 200)}[sport]
        if rng.random() < 0.06:
            base_pace = rng.uniform(150, 225)  # too fast to be a run: the rules reject it
        splits = [round(base_pace * rng.uniform(0.93, 1.07)) for _ in range(distance // 1000)]
        moving = base_pace * distance / 1000
        begin = start + timedelta(days=rng.randrange(days), hours=rng.choice([5, 6, 17, 18, 19]),
                                  minutes=rng.randrange(60))
        source = rng.choices(["device", "app", "manual"], weights=[60, 35, 5])[0]
        db.session.add(Activity(
            user_id=user.id, source=source, sport=sport, start=begin, elapsed_s=moving * 1.05, moving_s=moving,
            distance_m=float(distance), has_gps=source != "manual", split_paces=splits if source != "manual" else [],
            received_at=begin + timedelta(hours=rng.uniform(0.5, 30)),
            fingerprint=hashlib.sha256(f"demo|{challenge.id}|{number}".encode()).hexdigest()))


def _seed_money(tenant, challenge, plan, rng, beneficiaries):
    sponsor = db.session.scalar(sa.select(User).where(User.email == f"sponsor@{tenant.slug}.example"))
    if sponsor is not None:
        # Shared between the charities the runners picked, by their kilometres.
        fundraising.add_pledge(challenge, sponsor, {"rule": "per_km", "params": {"rate_per_km": plan.pledge_rate}})
        fundraising.add_pledge(challenge, sponsor, {"rule": "milestone", "params": {
            "amount": plan.donation_amounts[-1] * 100}})
    for number in range(40):
        amount = rng.choice(plan.donation_amounts)
        beneficiary = rng.choice(beneficiaries)
        # Demo donations arrive as confirmed bank transfers: no gateway is reached in the demo.
        payment = Payment(purpose="donation", gateway="bank_transfer", reference=f"demo-{challenge.id}-{number}",
                          idempotency_key=f"demo-{challenge.id}-{number}", gateway_ref=f"demo-{number}",
                          amount=amount, currency=tenant.currency, status="succeeded",
                          income_account=fundraising.donations_account(challenge.id, beneficiary.id))
        db.session.add(payment)
        db.session.flush()
        db.session.add(Donation(challenge_id=challenge.id, payment_id=payment.id, beneficiary_id=beneficiary.id,
                                amount=amount, currency=tenant.currency, donor_name=_name(rng, plan.vietnamese),
                                donor_email=f"donor{number}@example.com", anonymous=rng.random() < 0.2))
        record("payment", f"payment:{payment.reference}:captured", tenant.currency,
               [Posting("bank", amount), Posting(payment.income_account, -amount)])
    fundraising.accrue_pledges(challenge.id)
