"""Charts of kilometres per day on the challenge page: the public km per day, and a runner's own kilometres
added up day by day. The figures are in a table too (what a page without JavaScript shows), from the stored
verdicts of this tenant only, in the tenant's language."""

import json
import re
from datetime import UTC, datetime, time, timedelta
from html import unescape

from kindstride.challenges.models import Challenge
from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope
from tests.support.i18n import vi
from tests.support.jobs import run_queued_jobs
from tests.test_challenge_pages import NOW, SAIGON, _api_run, _client, _text, _token, create_challenge, site  # noqa: F401


def _chart(html, name):
    found = re.search(rf'id="{name}" data-ks-chart="([^"]*)"', html)
    assert found, f"no chart {name}"
    return json.loads(unescape(found.group(1)))


def _table_rows(html, name):
    """(day, *figures) of each row of the table beside the chart `name`."""
    figure = html[html.index(f'id="{name}"'):]
    figure = figure[:figure.index("</figure>")]
    return [(unescape(day), *cells) for day, cells in (
        (m.group(1), re.findall(r'class="ks-num">([^<]*)<', m.group(2)))
        for m in re.finditer(r'<th scope="row">([^<]*)</th>(.*?)</tr>', figure, re.S))]


def _day(moment):
    return moment.astimezone(SAIGON).date()


def _noon(days_ago):
    """Noon in Saigon `days_ago` local days before today: two of these never share a local day, whatever the
    hour the tests run at (NOW minus hours would, in the first hours of a local day)."""
    return datetime.combine(_day(NOW) - timedelta(days=days_ago), time(12), tzinfo=SAIGON).astimezone(UTC)


def test_challenge_page_charts_km_per_day_and_my_running_total(site, app, tenants):  # noqa: F811 (the fixture imported above)
    clients, tokens = site
    create_challenge(clients["admin"])  # counting started 5 days ago (Asia/Ho_Chi_Minh)
    for name in ("an", "binh"):
        clients[name].submit("/challenges/run-2024/register", {"mode": "alone"})
    two_days_ago, yesterday = _noon(2), _noon(1)
    _api_run(clients["an"], tokens["an"], two_days_ago, 5, 300)
    _api_run(clients["an"], tokens["an"], yesterday, 3, 300)
    _api_run(clients["binh"], tokens["binh"], yesterday, 10, 300)
    run_queued_jobs(app)

    html = _text(clients["anonymous"].get("/challenges/run-2024"))
    assert "vendor/uplot/uPlot.iife.min.js" in html and "kindstride-charts.js" in html
    chart = _chart(html, "daily-km-chart")
    assert chart["kind"] == "bars" and chart["series"] == "Kilometres per day"
    with tenant_scope(tenants["alpha"]):
        challenge = db.session.query(Challenge).filter_by(slug="run-2024").one()
        first = challenge.counting_start.astimezone(SAIGON).date()
    days = (_day(NOW) - first).days + 1
    assert len(chart["values"]) == days  # every day from the start to today, zero on a quiet day
    by_day = dict(zip(range(days), chart["values"], strict=True))
    assert by_day[(_day(two_days_ago) - first).days] == 5.0
    assert by_day[(_day(yesterday) - first).days] == 13.0
    assert sum(chart["values"]) == 18.0  # the days add up to the challenge's total
    # Without JavaScript: the same figures in a table, days and numbers in the tenant's locale.
    rows = _table_rows(html, "daily-km-chart")
    assert len(rows) == days
    assert (f"{_day(yesterday):%b} {_day(yesterday).day}, {_day(yesterday).year}", "13.0") in rows
    assert rows[0][1] == "0.0" and "The figures, day by day" in html

    anonymous_mine = re.search('id="my-progress-chart"', html)
    assert anonymous_mine is None  # only a registered runner has a running total

    mine = _text(clients["an"].get("/challenges/run-2024"))
    my_chart = _chart(mine, "my-progress-chart")
    assert my_chart["kind"] == "cumulative" and my_chart["series"] == "Your kilometres so far"
    assert my_chart["values"][-1] == 8.0 and my_chart["values"][(_day(two_days_ago) - first).days] == 5.0
    assert my_chart["values"] == sorted(my_chart["values"])  # a running total never goes down
    my_rows = _table_rows(mine, "my-progress-chart")
    assert my_rows[-1][1:] == ("0.0", "8.0")  # that day, the total so far
    assert ("3.0", "8.0") in [row[1:] for row in my_rows]


def test_charts_speak_the_tenants_language_and_count_only_its_own_data(site, app, tenants, make_user):  # noqa: F811 (the fixture imported above)
    clients, tokens = site
    create_challenge(clients["admin"])
    clients["an"].submit("/challenges/run-2024/register", {"mode": "alone"})
    _api_run(clients["an"], tokens["an"], NOW - timedelta(hours=26), 7, 300)
    beta_admin = make_user(tenants["beta"], "admin@beta.example", roles=("participant", "admin"))
    beta = _client(app, "beta", "admin@beta.example")
    create_challenge(beta)  # the same slug on another tenant's site
    beta.submit("/challenges/run-2024/register", {"mode": "alone"})
    _api_run(beta, _token(tenants["beta"], beta_admin), NOW - timedelta(hours=20), 12.5, 330,
             splits=[330] * 12)
    run_queued_jobs(app)

    html = _text(beta.get("/challenges/run-2024"))
    chart = _chart(html, "daily-km-chart")
    assert chart["series"] == vi("Kilometres per day")
    assert sum(chart["values"]) == 12.5  # alpha's 7 km are not here
    assert "12,5" in chart["texts"]  # Vietnamese decimals
    assert vi("The figures, day by day") in html
    assert vi("Your kilometres so far") == _chart(html, "my-progress-chart")["series"]
    assert sum(_chart(_text(clients["anonymous"].get("/challenges/run-2024")), "daily-km-chart")["values"]) == 7.0
