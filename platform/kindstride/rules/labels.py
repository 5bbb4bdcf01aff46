"""Plugin texts in the site's language.

A plugin names its strategies, presets and gateways in English (`label`, a preset's `description`): the text
a third-party plugin ships. The site shows them through `plugin_text`, which gives the catalogue's translation
when there is one and the text as written otherwise. The built-in plugins' texts are listed below so that
`pybabel extract` puts them in the catalogue (tests/test_plugin_labels.py checks the list is complete);
strings a plugin package translates itself would need their own catalogue.
"""

from flask_babel import gettext
from flask_babel import lazy_gettext as _l

BUILT_IN = (
    # core_rules: validation
    _l("Allowed sport types"), _l("Average pace window per sport"), _l("Within the challenge's counting window"),
    _l("Daily limits"), _l("Minimum and maximum distance"), _l("GPS recording required"),
    _l("No manually entered activities"), _l("Limit on paused time"), _l("Pace of every 1-km split"),
    _l("Synced in time"), _l("Indoor activities (treadmill, trainer)"),
    # scoring, multipliers, team scores
    _l("Distance"), _l("Moving time"), _l("Points per km by sport"), _l("Multiplier on dates"),
    _l("Multiplier on days of the week"), _l("Average per member"), _l("Sum of members' scores"),
    _l("Sum of the best members' scores"),
    # pledge rules
    _l("Match online donations, up to a cap"), _l("A fixed amount if the goal is reached"),
    _l("A rate per valid km, with a cap"),
    # presets
    _l("Nationwide charity run (2023 rules)"), _l("Nationwide charity run (2024 rules)"),
    _l("Humanitarian 56-day campaign"), _l("Company month challenge"),
    _l("Running only, at least 1 km, average pace 3:30-15:00 min/km, no 1-km split faster than 3:00, synced "
       "within 72 h of the start, no manual entries, Sundays count double when finished by midnight; distance, "
       "team total."),
    _l("As 2023 with stricter paces: average 4:00-15:00 min/km, no 1-km split faster than 3:30."),
    _l("Walks and runs of at least 1 km with every kilometre at 4:00-20:00 min/km (a pace window that no ride "
       "fits, so rides are not part of it); distance, team total."),
    _l("Runs, walks and rides; manual entries are flagged for an organiser to review; distance, teams ranked by "
       "average per member."),
    # gateways ("VNPay" is a name)
    _l("Card (Stripe)"),
)


def plugin_text(text):
    """A plugin's label or description in the site's language (as written when the catalogue lacks it)."""
    if not text or not isinstance(text, str):
        return text
    return gettext(text)
