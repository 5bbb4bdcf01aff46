"""The money pages of a tenant's site, through forms as a browser sends them: the donate form and its errors,
a VNPay donation from the form to the challenge page's money block, the Stripe card page and its
Content-Security-Policy, anonymous gifts, participants' fundraising pages, sponsors' pledges and statements,
the admin's refunds, reconciliation and CSV exports, branding with its contrast check, and who may see what.

Gateways are real servers on 127.0.0.1 (localstripe, and the fake VNPay speaking VNPay's protocol); the site
itself is reached through the Flask test client, so the gateway's browser redirects and VNPay's IPN are
replayed into it by the test."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa
from babel.numbers import format_currency

from kindstride.accounts import services as accounts
from kindstride.accounts.models import User
from kindstride.activities.services import add_entered
from kindstride.challenges import services as challenges
from kindstride.challenges.models import Challenge
from kindstride.db import db, utcnow
from kindstride.fundraising import services as fundraising
from kindstride.fundraising.models import Donation, Pledge
from kindstride.fundraising.statements import statement_lines
from kindstride.ledger.services import problems
from kindstride.payments.models import Payment
from kindstride.tenancy.scope import tenant_scope
from kindstride.tenancy.services import create_tenant, store_secret
from tests.conftest import BASE_DOMAIN, sign_in
from tests.support.fake_vnpay import start_fake_vnpay
from tests.support.i18n import vi, vi_part
from tests.support.jobs import run_queued_jobs
from tests.support.localstripe_server import start_localstripe

NOW = datetime.now(UTC).replace(microsecond=0)
STRIPE = {"publishable_key": "pk_test_kindstride", "secret_key": "sk_test_kindstride", "webhook_secret": "whsec_test"}
PASSWORD = "correct horse battery"


def vnd(amount):
    return format_currency(amount, "VND", locale="vi")


def usd(cents):
    return format_currency(cents / 100, "USD", locale="en")


@pytest.fixture(scope="module")
def localstripe():
    server = start_localstripe()
    yield server
    server.stop()


@pytest.fixture
def vnpay():
    fake = start_fake_vnpay()
    yield fake
    fake.stop()


@pytest.fixture
def site(make_app, localstripe, vnpay):
    """Two tenants: 'alpha' (English, USD, Stripe) and 'beta' (Vietnamese, VND, VNPay), each with an admin,
    a runner registered in challenge 'run', a sponsor, and a beneficiary."""
    js_url = f"{localstripe.url}/js.stripe.com/v3/"
    app = make_app(
        PLUGINS=["core_rules", "stripe", "vnpay"],
        STRAVA_CLIENT_ID="12345",
        STRAVA_CLIENT_SECRET="strava-secret",
        GATEWAY_ENDPOINTS={
            "stripe.api_base": localstripe.url,
            "stripe.js_url": js_url,
            "vnpay.payment_url": vnpay.payment_url,
            "vnpay.api_url": vnpay.api_url,
        },
    )
    ids = {}
    with app.app_context():
        for slug, name, locale, currency, gateway in (
            ("alpha", "Alpha Corp", "en", "USD", "stripe"),
            ("beta", "Công ty Beta", "vi", "VND", "vnpay"),
        ):
            tenant = create_tenant(slug, name, locale, currency, "Asia/Ho_Chi_Minh")
            public = (
                {"publishable_key": STRIPE["publishable_key"]} if gateway == "stripe" else {"tmn_code": vnpay.tmn_code}
            )
            tenant.settings = {
                **tenant.settings,
                "gateways": {gateway: public},
                "contact_email": f"fund@{slug}.example",
            }
            db.session.commit()
            with tenant_scope(tenant.id):
                if gateway == "stripe":
                    store_secret("gateway.stripe.secret_key", STRIPE["secret_key"])
                    store_secret("gateway.stripe.webhook_secret", STRIPE["webhook_secret"])
                else:
                    store_secret("gateway.vnpay.hash_secret", vnpay.hash_secret)
                people = {}
                for person, roles in (
                    ("admin", ("participant", "admin")),
                    ("runner", ("participant",)),
                    ("sponsor", ("sponsor",)),
                    ("other", ("sponsor",)),
                ):
                    user = accounts.sign_up(f"{person}@{slug}.example", person.title(), PASSWORD)
                    user.email_confirmed_at = utcnow()
                    for role in roles:
                        accounts.grant_role(user, role)
                    people[person] = user
                challenge = challenges.create_challenge(
                    {
                        "slug": "run",
                        "title": "Run for good",
                        "sports": ["run"],
                        "goal_km": 100,
                        "registration_opens_at": (NOW - timedelta(days=3)).isoformat(),
                        "registration_closes_at": (NOW + timedelta(days=9)).isoformat(),
                        "counting_start": (NOW - timedelta(days=3)).isoformat(),
                        "counting_end": (NOW + timedelta(days=9)).isoformat(),
                        "preset": "vn-charity-run-2024",
                    }
                )
                beneficiary = fundraising.add_beneficiary(
                    challenge, {"name": "Children's Heart Fund", "website": "https://heart.example"}
                )
                registration = challenges.register(challenge, people["runner"], {})
                db.session.commit()
                ids[slug] = {
                    "tenant": tenant.id,
                    "registration": registration.id,
                    "beneficiary": beneficiary.id,
                    "challenge": challenge.id,
                    "runner": people["runner"].id,
                }
        yield {"app": app, "ids": ids, "js_url": js_url}


def client(site, slug, person=None):
    browser = site["app"].test_client().on(slug)
    if person:
        sign_in(browser, f"{person}@{slug}.example", PASSWORD)
    return browser


def text(response):
    return response.get_data(as_text=True)


def errors(response, field):
    return re.findall(rf'id="e-{re.escape(field)}">([^<]*)<', text(response))


def donate(browser, path="/challenges/run/donate", **fields):
    """Send the donate form as shown (its CSRF token and idempotency key), with the given fields."""
    page = browser.get(path)
    assert page.status_code == 200, text(page)
    html = text(page)
    form = {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
        "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1),
        "donor_name": "Mai Tran",
        "donor_email": "mai@example.com",
    }
    for name in ("team", "participant"):
        found = re.search(rf'name="{name}" value="(\d+)"', html)
        if found:
            form[name] = found.group(1)
    form.update(fields)
    return browser.post("/challenges/run/donate", data=form), form


def payments_of(site, slug):
    with tenant_scope(site["ids"][slug]["tenant"]):
        db.session.expire_all()
        return db.session.scalars(sa.select(Payment).order_by(Payment.id)).all()


def pay_with_vnpay(site, vnpay, browser, **fields):
    """A VNPay donation from the form: the fake's payment page, then VNPay's IPN to the site. Returns the
    payment reference."""
    response, _form = donate(browser, gateway="vnpay", **fields)
    assert response.status_code == 303, text(response)
    location = response.headers["Location"]
    assert location.startswith(vnpay.payment_url)
    txn_ref = parse_qs(urlsplit(location).query)["vnp_TxnRef"][0]
    paid = requests.get(location, allow_redirects=False, timeout=10)  # the donor pays on VNPay's page
    assert paid.status_code == 302, paid.text
    ipn = browser.get("/payments/vnpay/webhook", query_string=vnpay.ipn_params(txn_ref))
    assert ipn.json["RspCode"] == "00", ipn.json
    return next(p.reference for p in payments_of(site, "beta") if p.gateway_ref == txn_ref)


# ---------------------------------------------------------------- the donate form


def test_donate_form_refuses_bad_amounts_next_to_the_field(site):
    beta = client(site, "beta")
    page = beta.get("/challenges/run/donate")
    html = text(page)
    assert page.status_code == 200
    assert 'value="50000"' in html and vnd(50_000) in html  # presets in minor units, shown in VND
    assert 'for="f-other_amount"' in html and 'for="f-donor_email"' in html and 'for="f-beneficiary_id"' in html
    assert "Children&#39;s Heart Fund" in html and 'name="gateway" value="vnpay"' in html
    for typed, message in (
        ("-5", vi("Enter an amount greater than zero.")),
        ("5.000", vi("The smallest donation is %(amount)s.", amount=vnd(10_000))),
        ("50000,5", vi("%(currency)s has no smaller unit: enter a whole number.", currency="VND")),
        ("abc", vi_part("Enter the amount in figures, for example %(example)s.")),
        ("1e9", vi_part("Enter the amount in figures, for example %(example)s.")),
    ):
        response, _form = donate(beta, preset="other", other_amount=typed, gateway="vnpay")
        assert response.status_code == 400, typed
        assert any(message in error for error in errors(response, "amount")), (typed, errors(response, "amount"))
        assert 'aria-describedby="e-amount"' in text(response)
        assert f'value="{typed}"' in text(response)  # what was typed is kept
    missing, _form = donate(beta, preset="50000", gateway="vnpay", donor_name="", donor_email="nobody")
    assert missing.status_code == 400 and errors(missing, "donor_name") and errors(missing, "donor_email")
    unknown, _form = donate(beta, preset="50000", gateway="paypal")
    assert unknown.status_code == 400 and errors(unknown, "gateway")
    assert payments_of(site, "beta") == []  # nothing was started

    alpha = client(site, "alpha")
    cents, _form = donate(alpha, preset="other", other_amount="10.505", gateway="stripe")
    assert cents.status_code == 400 and "at most 2 decimal places" in errors(cents, "amount")[0]
    assert alpha.get("/challenges/run/donate?team=999999").status_code == 404
    assert alpha.get("/challenges/run/donate?participant=abc").status_code == 404


def test_vnpay_donation_from_the_form_shows_on_the_challenge_page_in_vnd(site, vnpay):
    beta = client(site, "beta")
    before = text(beta.get("/challenges/run"))
    assert (
        vi("Money raised") in before
        and "/challenges/run/donate" in before
        and vi("No donations yet. Be the first!") in before
    )

    response, form = donate(
        beta,
        preset="other",
        other_amount="150.000",
        gateway="vnpay",
        message="Cố lên!",
        beneficiary_id=str(site["ids"]["beta"]["beneficiary"]),
    )
    assert response.status_code == 303 and response.headers["Location"].startswith(vnpay.payment_url)
    again = beta.post("/challenges/run/donate", data=form)  # a double click: the same payment, not a second
    assert again.status_code == 303 and "/donations/" in again.headers["Location"]
    assert len(payments_of(site, "beta")) == 1
    # Nothing counts before VNPay confirms.
    assert vnd(150_000) not in text(beta.get("/challenges/run"))

    txn_ref = parse_qs(urlsplit(response.headers["Location"]).query)["vnp_TxnRef"][0]
    assert requests.get(response.headers["Location"], allow_redirects=False, timeout=10).status_code == 302
    ipn = beta.get("/payments/vnpay/webhook", query_string=vnpay.ipn_params(txn_ref))
    assert ipn.json["RspCode"] == "00"
    page = text(beta.get("/challenges/run"))
    block = page[page.index('id="money-h"') :]
    assert re.search(rf"{vi('Donated')}</dt><dd>{re.escape(vnd(150_000))}<", block), block[:800]
    assert re.search(rf"{vi('Total raised')}</dt><dd>{re.escape(vnd(150_000))}<", block)
    assert "Mai Tran" in block and "Cố lên!" in block
    assert re.search(r"Children&#39;s Heart Fund</a>.*?" + re.escape(vnd(150_000)), block, re.S)
    reference = payments_of(site, "beta")[0].reference
    status = text(beta.get(f"/donations/{reference}"))
    assert vi("Thank you!") in status and vnd(150_000) in status


def test_anonymous_gifts_show_no_name_and_a_participant_page_counts_its_own(site, vnpay):
    ids = site["ids"]["beta"]
    beta = client(site, "beta")
    pay_with_vnpay(site, vnpay, beta, preset="100000", donor_name="Secret Donor", anonymous="1")
    pay_with_vnpay(
        site,
        vnpay,
        beta,
        path=f"/challenges/run/donate?participant={ids['registration']}",
        preset="200000",
        donor_name="Aunt Lan",
        message="Go Runner!",
    )
    challenge_page = text(beta.get("/challenges/run"))
    assert "Secret Donor" not in challenge_page and vi("Anonymous") in challenge_page
    assert vnd(300_000) in challenge_page and "Aunt Lan" in challenge_page
    participant = text(beta.get(f"/challenges/run/participants/{ids['registration']}"))
    assert re.search(rf"{vi('Raised on this page')}</dt><dd>{re.escape(vnd(200_000))}<", participant)
    assert "Aunt Lan" in participant and "Secret Donor" not in participant
    assert f"/challenges/run/donate?participant={ids['registration']}" in participant
    with tenant_scope(ids["tenant"]):
        donations = db.session.scalars(sa.select(Donation).order_by(Donation.id)).all()
        assert [d.registration_id for d in donations] == [None, ids["registration"]]
        assert problems() == []


# ---------------------------------------------------------------- Stripe's card page


def test_stripe_card_page_carries_the_element_and_only_it_allows_stripe_js(site, localstripe):
    alpha = client(site, "alpha")
    origin = localstripe.url
    for path in ("/challenges/run", "/challenges/run/donate"):
        policy = alpha.get(path).headers["Content-Security-Policy"]
        assert origin not in policy and "script-src 'self';" in policy

    response, _form = donate(alpha, preset="2500", gateway="stripe", anonymous="1")
    assert response.status_code == 303, text(response)
    card_path = response.headers["Location"]
    assert re.fullmatch(r"/donations/ks\d+-donati-[0-9a-f]+/card", card_path)
    card = alpha.get(card_path)
    html = text(card)
    assert card.status_code == 200
    assert 'id="ks-payment-element"' in html
    assert 'data-publishable-key="pk_test_kindstride"' in html
    assert re.search(r'data-client-secret="pi_\w+_secret_\w+"', html)
    assert f'data-return-url="http://alpha.{BASE_DOMAIN}/payments/stripe/return"' in html
    assert f'<script src="{site["js_url"]}"></script>' in html and "kindstride-stripe.js" in html
    assert "needs JavaScript" in html and "<noscript>" in html  # what happens without it
    policy = card.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert origin in directives["script-src"] and origin in directives["frame-src"]
    assert origin in directives["connect-src"] and "'unsafe-inline'" not in policy
    assert card.headers["Cache-Control"] == "private, no-store"
    # Another browser (no session) does not get the client secret.
    stranger = text(client(site, "alpha").get(card_path))
    assert "data-client-secret" not in stranger and "started in another window" in stranger

    # The donor pays in Stripe's element; Stripe sends the browser back to the payer-return address.
    payment = payments_of(site, "alpha")[0]
    status, intent = localstripe.pay(
        payment.gateway_ref, publishable_key=STRIPE["publishable_key"], secret_key=STRIPE["secret_key"]
    )
    assert status == 200 and intent["status"] == "succeeded"
    back = alpha.get(f"/payments/stripe/return?payment_intent={payment.gateway_ref}&redirect_status=succeeded")
    assert back.status_code == 302 and back.headers["Location"] == f"/donations/{payment.reference}"
    assert "Thank you!" in text(alpha.get(back.headers["Location"]))
    page = text(alpha.get("/challenges/run"))
    assert re.search(rf"Donated</dt><dd>{re.escape(usd(2500))}<", page) and "Mai Tran" not in page
    assert alpha.get(card_path).status_code == 302  # paid: the card page sends to the result


# ---------------------------------------------------------------- participants' own pages


def test_a_participant_sets_a_goal_and_story(site):
    ids = site["ids"]["beta"]
    runner = client(site, "beta", "runner")
    assert runner.get("/challenges/run/my-page").status_code == 200
    bad = runner.submit("/challenges/run/my-page", {"goal": "một triệu", "story": "x"})
    assert bad.status_code == 400 and errors(bad, "goal")
    saved = runner.submit("/challenges/run/my-page", {"goal": "2.000.000", "story": "Cho các em nhỏ.\nMỗi km."})
    assert saved.status_code == 302
    assert saved.headers["Location"] == f"/challenges/run/participants/{ids['registration']}"
    page = text(client(site, "beta").get(saved.headers["Location"]))
    assert "Cho các em nhỏ." in page and vnd(2_000_000) in page and "<progress" in page
    assert "Edit my page" not in page  # only the owner sees it
    assert 'value="2.000.000"' in text(runner.get("/challenges/run/my-page"))
    assert client(site, "beta", "sponsor").get("/challenges/run/my-page").status_code == 302  # not registered
    assert client(site, "beta").get("/challenges/run/participants/999999").status_code == 404


# ---------------------------------------------------------------- sponsors


def test_a_sponsor_pledges_from_the_form_and_downloads_the_statement(site):
    ids = site["ids"]["beta"]
    sponsor = client(site, "beta", "sponsor")
    form = sponsor.get("/challenges/run/pledges")
    html = text(form)
    assert form.status_code == 200
    assert 'name="rule" value="per_km"' in html and 'name="p.pledge.per_km.rate_per_km"' in html
    assert 'name="p.pledge.matching.ratio"' in html and 'for="f-p.pledge.milestone.amount"' in html
    none_chosen = sponsor.submit("/challenges/run/pledges", {"sponsor_name": "TechViet"})
    assert none_chosen.status_code == 400 and errors(none_chosen, "rule")
    no_rate = sponsor.submit("/challenges/run/pledges", {"rule": "per_km", "p.pledge.per_km.cap": "50000"})
    assert no_rate.status_code == 400 and errors(no_rate, "p.pledge.per_km.rate_per_km")
    assert 'value="50000"' in text(no_rate)
    created = sponsor.submit(
        "/challenges/run/pledges",
        {
            "rule": "per_km",
            "p.pledge.per_km.rate_per_km": "1000",
            "p.pledge.per_km.cap": "50000",
            "sponsor_name": "TechViet JSC",
            "beneficiary_id": str(ids["beneficiary"]),
        },
    )
    assert created.status_code == 302 and created.headers["Location"].startswith("/sponsor/pledges#pledge-")

    with tenant_scope(ids["tenant"]):
        runner = db.session.get(User, ids["runner"])
        add_entered(
            runner,
            {
                "sport": "run",
                "start": (NOW - timedelta(hours=6)).isoformat(),
                "moving_s": 2200,
                "distance_m": 7_345,
                "has_gps": True,
                "split_paces_s_per_km": [300] * 7,
            },
            source="api",
        )
        db.session.commit()
    run_queued_jobs(site["app"])
    with tenant_scope(ids["tenant"]):
        fundraising.accrue_pledges(ids["challenge"])
        db.session.commit()
        pledge = db.session.scalar(sa.select(Pledge))
        pledge_id = pledge.id
        assert fundraising.accrued(pledge) == 7_345

    mine = text(sponsor.get("/sponsor/pledges"))
    assert "Run for good" in mine and vnd(7_345) in mine and f"/sponsor/pledges/{pledge_id}/statement.pdf" in mine
    pdf = sponsor.get(f"/sponsor/pledges/{pledge_id}/statement.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert "attachment" in pdf.headers["Content-Disposition"]
    with site["app"].test_request_context(base_url=f"http://beta.{BASE_DOMAIN}"):
        site["app"].preprocess_request()
        content = statement_lines(db.session.get(Pledge, pledge_id))
    lines = dict(line for _heading, section in content["sections"] for line in section)
    assert content["title"] == vi("Interim pledge statement") and not content["final"]
    assert lines[vi("Accrued")] == vnd(7_345) and lines[vi("Outstanding")] == vnd(7_345)
    assert lines[vi("Sponsor")] == "TechViet JSC"
    assert lines[vi("For")] == "Children's Heart Fund" and lines[vi("Valid km in scope")] in ("7,35", "7,34")
    with tenant_scope(ids["tenant"]):  # once the challenge stops counting, the statement is final
        db.session.get(Challenge, ids["challenge"]).counting_end = NOW - timedelta(minutes=1)
        db.session.commit()
    with site["app"].test_request_context(base_url=f"http://beta.{BASE_DOMAIN}"):
        site["app"].preprocess_request()
        final = statement_lines(db.session.get(Pledge, pledge_id))
    assert final["final"] and final["title"] == vi("Final pledge statement")
    assert vi_part("Final statement: the challenge stopped counting on %(end)s.") in final["status"]

    assert client(site, "beta", "other").get(f"/sponsor/pledges/{pledge_id}/statement.pdf").status_code == 404
    runner_client = client(site, "beta", "runner")
    assert runner_client.get("/sponsor/pledges").status_code == 403
    assert runner_client.get("/challenges/run/pledges").status_code == 403

    # The admin records the sponsor's bank transfer against the pledge.
    admin = client(site, "beta", "admin")
    pledges_path = "/admin/money/run/pledges"
    assert vnd(7_345) in text(admin.get(pledges_path))
    too_much = admin.submit(
        f"/admin/money/pledges/{pledge_id}/payments", {"amount": "10.000", "reference": "UNC-1"}, form_path=pledges_path
    )
    assert (
        too_much.status_code == 400
        and vi("Only %(amount)s is outstanding on this pledge.", amount=vnd(7_345)) in errors(too_much, "amount")[0]
    )
    paid = admin.submit(
        f"/admin/money/pledges/{pledge_id}/payments", {"amount": "5.000", "reference": "UNC-1"}, form_path=pledges_path
    )
    assert paid.status_code == 302
    page = text(admin.get(pledges_path))
    assert re.search(rf"{vi('Paid')}</dt><dd>{re.escape(vnd(5_000))}<", page)
    assert re.search(rf"{vi('Outstanding')}</dt><dd>{re.escape(vnd(2_345))}<", page)
    assert vnd(2_345) in text(sponsor.get("/sponsor/pledges"))


# ---------------------------------------------------------------- the admin's money console


def test_admin_refunds_part_of_a_donation_and_reconciles(site, vnpay):
    beta = client(site, "beta")
    reference = pay_with_vnpay(site, vnpay, beta, preset="other", other_amount="150000")
    pay_with_vnpay(site, vnpay, beta, preset="50000", donor_name="=HYPERLINK(1)")
    admin = client(site, "beta", "admin")
    listing = text(admin.get("/admin/money/payments"))
    assert reference in listing and f'action="/admin/money/payments/{reference}/refund"' in listing
    assert f'for="f-refund-{reference}"' in listing

    refund_path = f"/admin/money/payments/{reference}/refund"
    too_much = admin.submit(refund_path, {"amount": "200.000"}, form_path="/admin/money/payments")
    assert (
        too_much.status_code == 400
        and vi("At most %(amount)s can still be refunded.", amount=vnd(150_000)) in errors(too_much, "amount")[0]
    )
    fraction = admin.submit(refund_path, {"amount": "10,5"}, form_path="/admin/money/payments")
    assert (
        fraction.status_code == 400
        and vi("%(currency)s has no smaller unit: enter a whole number.", currency="VND")
        in errors(fraction, "amount")[0]
    )
    refunded = admin.submit(refund_path, {"amount": "20.000"}, form_path="/admin/money/payments")
    assert refunded.status_code == 302, text(refunded)
    listing = text(admin.get("/admin/money/payments"))
    row = listing[listing.index(f'id="payment-{reference}"') :]
    row = row[: row.index("</tr>")]
    assert re.search(rf'data-label="{vi("Refunded")}" class="ks-num">{re.escape(vnd(20_000))}<', row)
    assert 'value="130000"' in row  # what is left to refund
    assert re.search(rf"{vi('Donated')}</dt><dd>{re.escape(vnd(180_000))}<", text(beta.get("/challenges/run")))

    page = admin.get("/admin/money/reconciliation")
    assert page.status_code == 200 and vi("Every payment matches the ledger.") in text(page)
    download = admin.get("/admin/money/reconciliation.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == [
        "reference",
        "purpose",
        "gateway",
        "currency",
        "gateway_status",
        "gateway_amount",
        "gateway_refunded",
        "ledger_captured",
        "ledger_refunded",
        "matches",
    ]
    assert len(rows) == 1 + len(payments_of(site, "beta")) == 3
    mine = next(row for row in rows[1:] if row[0] == reference)
    assert mine[1:5] == ["donation", "vnpay", "VND", "succeeded"]
    assert mine[5] == "150000" and mine[7] == "150000" and mine[8] == "20000" and mine[9] == "yes"

    donations = admin.get("/admin/money/donations.csv")
    table = list(csv.reader(io.StringIO(donations.get_data(as_text=True).lstrip("\ufeff"))))
    assert table[0][:4] == ["created_at", "reference", "challenge", "donor_name"] and len(table) == 3
    assert table[2][3] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    board = admin.get("/admin/money/run/participants.csv")
    assert board.mimetype == "text/csv"
    board_rows = list(csv.reader(io.StringIO(board.get_data(as_text=True).lstrip("\ufeff"))))
    assert board_rows[0] == ["rank", "bib", "name", "team", "km", "score", "score_unit", "activities"]
    assert board_rows[1][:3] == ["1", "1", "Runner"]

    # The same form sent twice (a double click, a resubmitted page) is one refund: its key says so.
    listing = text(admin.get("/admin/money/payments"))
    key = re.search(rf'action="/admin/money/payments/{reference}/refund"[^>]*>.*?name="refund_key" value="([^"]+)"',
                    listing, re.S).group(1)
    for _ in range(2):
        again = admin.submit(refund_path, {"amount": "1.000", "refund_key": key}, form_path="/admin/money/payments")
        assert again.status_code == 302, text(again)
    row = text(admin.get("/admin/money/payments"))
    row = row[row.index(f'id="payment-{reference}"'):]
    row = row[:row.index("</tr>")]
    assert re.search(rf'data-label="{vi("Refunded")}" class="ks-num">{re.escape(vnd(21_000))}<', row)


def test_branding_refuses_a_colour_white_text_cannot_be_read_on(site):
    admin = client(site, "beta", "admin")
    page = text(admin.get("/admin/branding"))
    assert (
        'type="color"' in page
        and 'for="f-primary_color"' in page
        and vi_part(
            "Custom domains are added by the platform operator, who also sets up their DNS and certificates. "
            "Contact them to add or remove one."
        )[:30]
        in page
    )
    assert (
        f"beta.{BASE_DOMAIN}" in page
        and vi_part("Upload the logo") in page
    )
    yellow = admin.submit(
        "/admin/branding",
        {"primary_color": "#ffff00", "accent_color": "#d62828", "tagline": "Mỗi bước chân", "about": ""},
    )
    assert yellow.status_code == 400
    message = errors(yellow, "primary_color")[0]
    assert "1,0:1" in message and "4,5:1" in message, message  # in the tenant's (vi) numbers
    assert 'aria-describedby="e-primary_color"' in text(yellow)
    assert "#ffff00" not in admin.get("/theme.css").get_data(as_text=True)
    broken = admin.submit("/admin/branding", {"primary_color": "red", "accent_color": "#d62828"})
    assert broken.status_code == 400 and errors(broken, "primary_color")
    saved = admin.submit(
        "/admin/branding",
        {"primary_color": "#1B6E3A", "accent_color": "#d62828", "tagline": "Mỗi bước chân", "about": "Về chúng tôi"},
    )
    assert saved.status_code == 302
    assert "#1b6e3a" in admin.get("/theme.css").get_data(as_text=True)
    assert "Mỗi bước chân" in text(client(site, "beta").get("/"))


def test_every_admin_page_is_forbidden_to_a_participant(site):
    reference = "ks1-donati-0000000000000000"
    pages = [
        "/admin/money/",
        "/admin/money/run/beneficiaries",
        "/admin/money/run/pledges",
        "/admin/money/payments",
        "/admin/money/reconciliation",
        "/admin/money/reconciliation.csv",
        "/admin/money/donations.csv",
        "/admin/money/run/participants.csv",
        "/admin/branding",
    ]
    posts = [
        "/admin/money/run/beneficiaries",
        "/admin/money/pledges/1/payments",
        f"/admin/money/payments/{reference}/refund",
        "/admin/branding",
    ]
    runner = client(site, "alpha", "runner")
    sponsor = client(site, "alpha", "sponsor")
    anonymous = client(site, "alpha")
    token = runner.csrf_token("/account")
    for path in pages:
        assert runner.get(path).status_code == 403, path
        assert sponsor.get(path).status_code == 403, path
        assert anonymous.get(path).status_code == 302, path
    for path in posts:
        assert runner.post(path, data={"csrf_token": token, "amount": "1"}).status_code == 403, path
    admin = client(site, "alpha", "admin")
    for path in pages:
        assert admin.get(path).status_code == 200, path
    # Another tenant's admin pages answer for that tenant only.
    assert client(site, "beta", "admin").get("/admin/money/payments").status_code == 200


def test_account_page_offers_strava_when_the_platform_has_it(site, make_app):
    runner = client(site, "alpha", "runner")
    page = text(runner.get("/account"))
    assert 'href="/strava/connect"' in page and "Connect Strava" in page
    plain = make_app()  # no Strava client id: no block
    browser = plain.test_client().on("alpha")
    sign_in(browser, "runner@alpha.example", PASSWORD)
    assert "Strava" not in text(browser.get("/account"))
