"""Ways around the site: a team page's "Donate for this team" when the site takes donations, leaderboard names
that lead to the participant's page, and the header's links to the money console (admins) and to a
sponsor's pledges."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from kindstride.accounts.models import User
from kindstride.challenges import services as challenges
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant
from tests.conftest import sign_in
from tests.support.i18n import vi

NOW = datetime.now(UTC)


def _text(response):
    return response.get_data(as_text=True)


@pytest.fixture
def sites(make_app, make_user):
    """'alpha' (English, USD, no gateway) and 'beta' (Vietnamese, VND, VNPay configured), each with a
    challenge 'run' where An leads team Rocket and Binh runs alone."""
    app = make_app(PLUGINS=["core_rules", "vnpay"])
    ids = {}
    with app.app_context():
        for slug, locale, currency in (("alpha", "en", "USD"), ("beta", "vi", "VND")):
            tenant = create_tenant(slug, slug.title(), locale, currency, "Asia/Ho_Chi_Minh")
            if slug == "beta":
                tenant.settings = {**tenant.settings, "gateways": {"vnpay": {"tmn_code": "KSTEST01"}}}
            db.session.commit()
            people = {name: make_user(tenant.id, f"{name}@{slug}.example", roles=roles) for name, roles in (
                ("an", ("participant",)), ("binh", ("participant",)), ("admin", ("participant", "admin")),
                ("sponsor", ("sponsor",)))}
            with tenant_scope(tenant.id):
                challenge = challenges.create_challenge({
                    "slug": "run", "title": "Run", "sports": ["run"], "preset": "company-month",
                    "registration_opens_at": (NOW - timedelta(days=1)).isoformat(),
                    "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
                    "counting_start": (NOW - timedelta(days=1)).isoformat(),
                    "counting_end": (NOW + timedelta(days=9)).isoformat()})
                an = challenges.register(challenge, db.session.get(User, people["an"]), {"new_team": "Rocket"})
                binh = challenges.register(challenge, db.session.get(User, people["binh"]), {})
                db.session.commit()
                ids[slug] = {"team": an.team_id, "an": an.id, "binh": binh.id}
    yield app, ids


def _client(app, slug, who=None):
    client = app.test_client().on(slug)
    if who:
        sign_in(client, f"{who}@{slug}.example")
    return client


def test_team_page_offers_to_donate_for_the_team_where_the_site_takes_donations(sites):
    app, ids = sites
    beta_team = f"/challenges/run/teams/{ids['beta']['team']}"
    page = _text(_client(app, "beta").get(beta_team))
    link = re.search(r'<a class="ks-button" href="(/challenges/run/donate[^"]*)">([^<]+)</a>', page)
    assert link and link.group(2) == vi("Donate for this team")
    assert link.group(1).replace("&amp;", "&") == f"/challenges/run/donate?team={ids['beta']['team']}"
    donate = _client(app, "beta").get(link.group(1).replace("&amp;", "&"))
    assert donate.status_code == 200 and "Rocket" in _text(donate)  # the gift goes to the team
    # No gateway on alpha: no button that would lead nowhere.
    alpha = _text(_client(app, "alpha").get(f"/challenges/run/teams/{ids['alpha']['team']}"))
    assert "Donate for this team" not in alpha and "/donate" not in alpha


def test_leaderboard_names_lead_to_the_participants_page(sites):
    app, ids = sites
    anonymous = _client(app, "alpha")
    for path in ("/challenges/run/leaderboard", "/challenges/run", f"/challenges/run/teams/{ids['alpha']['team']}"):
        html = _text(anonymous.get(path))
        assert f'data-label="Name"><a href="/challenges/run/participants/{ids["alpha"]["an"]}">An</a>' in html, path
    assert f'<a href="/challenges/run/participants/{ids["alpha"]["binh"]}">Binh</a>' in _text(
        anonymous.get("/challenges/run/leaderboard"))
    page = anonymous.get(f"/challenges/run/participants/{ids['alpha']['an']}")
    assert page.status_code == 200 and "An" in _text(page)
    # The same registration id on the other site is not this participant.
    assert _client(app, "beta").get(f"/challenges/run/participants/{ids['alpha']['an']}").status_code == 404


def test_header_links_to_money_for_admins_and_to_pledges_for_sponsors(sites):
    app, _ids = sites
    nav = re.compile(r'<nav aria-label="Account">(.*?)</nav>', re.S)
    admin = nav.search(_text(_client(app, "alpha", "admin").get("/"))).group(1)
    assert '<a href="/admin/money/">Money</a>' in admin and "/sponsor/pledges" not in admin
    assert _client(app, "alpha", "admin").get("/admin/money/").status_code == 200
    sponsor = nav.search(_text(_client(app, "alpha", "sponsor").get("/"))).group(1)
    assert '<a href="/sponsor/pledges">My pledges</a>' in sponsor and "/admin/money/" not in sponsor
    assert _client(app, "alpha", "sponsor").get("/sponsor/pledges").status_code == 200
    runner = nav.search(_text(_client(app, "alpha", "an").get("/"))).group(1)
    assert "/admin/money/" not in runner and "/sponsor/pledges" not in runner
    beta = _text(_client(app, "beta", "sponsor").get("/"))
    assert f'<a href="/sponsor/pledges">{vi("My pledges")}</a>' in beta
