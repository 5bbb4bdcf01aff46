"""Plugin labels in the site's language: every label and preset text of the built-in plugins is in the
catalogue with a Vietnamese translation, and a Vietnamese site's ruleset editor, challenge builder and
pledge form show them translated (an English site shows them as the plugin wrote them)."""

import re

from kindstride.challenges import rulesets
from kindstride.db import db
from kindstride.plugins import plugin_host
from kindstride.rules.labels import BUILT_IN
from kindstride.tenancy.services import create_tenant
from tests.conftest import sign_in
from tests.support.i18n import vi
from tests.test_challenge_pages import builder_form

HOOKS = [hook for hook, _many in rulesets.SECTIONS.values()] + ["register_pledge_rules", "register_payment_gateways"]
NAMES = {"VNPay"}  # a name, the same in every language


def _texts(tenant):
    texts = set()
    for hook in HOOKS:
        texts |= {strategy.label for strategy in plugin_host().strategies(hook, tenant).values()}
    for preset in rulesets.presets(tenant).values():
        texts |= {preset.label, preset.description}
    return texts - NAMES


def test_every_built_in_plugin_text_is_in_the_catalogue_and_translated(make_app):
    app = make_app(PLUGINS=["core_rules", "stripe", "vnpay"])
    with app.app_context():
        tenant = create_tenant("beta", "Beta", "vi", "VND", "Asia/Ho_Chi_Minh")
        db.session.commit()
        texts = _texts(tenant)
    listed = {text._args[0] for text in BUILT_IN}  # the msgids (lazy strings, not yet translated)
    assert len(texts) > 25
    assert texts - listed == set(), "add these to kindstride/rules/labels.py and translate them"
    untranslated = [text for text in texts if not vi(text) or vi(text) == text]
    assert untranslated == []


def test_a_vietnamese_site_shows_plugin_labels_in_vietnamese(make_app, make_user):
    app = make_app()
    with app.app_context():
        ids = {slug: create_tenant(slug, slug.title(), locale, currency, "Asia/Ho_Chi_Minh").id
               for slug, locale, currency in (("alpha", "en", "USD"), ("beta", "vi", "VND"))}
        db.session.commit()
    for slug, tenant_id in ids.items():
        make_user(tenant_id, f"admin@{slug}.example", roles=("participant", "admin"))
    beta = app.test_client().on("beta")
    sign_in(beta, "admin@beta.example")
    builder = beta.get("/admin/challenges/new").get_data(as_text=True)
    assert f'<label for="preset-vn-charity-run-2024">{vi("Nationwide charity run (2024 rules)")}</label>' in builder
    assert vi("As 2023 with stricter paces: average 4:00-15:00 min/km, no 1-km split faster than 3:30.") in builder
    assert beta.submit("/admin/challenges/new", builder_form(slug="run")).status_code == 302
    editor = beta.get("/admin/challenges/run/ruleset").get_data(as_text=True)
    assert re.search(rf'<label for="use-scoring-distance">{re.escape(vi("Distance"))} <code>distance</code>', editor)
    assert vi("Minimum and maximum distance") in editor and "Minimum and maximum distance" not in editor

    alpha = app.test_client().on("alpha")
    sign_in(alpha, "admin@alpha.example")
    builder = alpha.get("/admin/challenges/new").get_data(as_text=True)
    assert '<label for="preset-vn-charity-run-2024">Nationwide charity run (2024 rules)</label>' in builder
