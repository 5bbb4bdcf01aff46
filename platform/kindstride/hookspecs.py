"""The kindstride plugin hooks. Every hook is documented here with its exact signature (a test checks).

Registration hooks return a list of strategies: objects with a unique `name`, a `label`, and a
marshmallow `params_schema` class declaring their parameters. A challenge stores which strategies it
uses, by name, with parameters, so results never depend on the order hooks are called in.
Event hooks only enqueue work (kindstride.jobs.enqueue); they never change data themselves.
"""

import pluggy

hookspec = pluggy.HookspecMarker("kindstride")
hookimpl = pluggy.HookimplMarker("kindstride")


@hookspec
def register_validation_rules():
    """Return activity validation rules: each judges one activity and gives reason codes."""


@hookspec
def register_scoring_rules():
    """Return scoring rules: each turns an accepted activity into points (km, minutes, points)."""


@hookspec
def register_score_multipliers():
    """Return score multipliers: each gives a factor for an activity (Sunday x2, a double-points week)."""


@hookspec
def register_ruleset_presets():
    """Return ruleset presets: ready-made rulesets (strategies with parameters) of real events."""


@hookspec
def register_team_aggregations():
    """Return team aggregations: each turns members' scores into a team score (sum, average, ...)."""


@hookspec
def register_pledge_rules():
    """Return pledge rules: each computes what a sponsor owes from a challenge's results."""


@hookspec
def register_payment_gateways():
    """Return payment gateways: each creates, confirms, refunds and verifies payments."""


@hookspec
def register_activity_sources():
    """Return activity sources: each imports activities (a file format, a connected service)."""


@hookspec
def activity_accepted(tenant_id, activity_id):
    """An activity was accepted into a challenge; enqueue follow-up work only."""


@hookspec
def donation_succeeded(tenant_id, donation_id):
    """A donation's payment succeeded and is in the ledger; enqueue follow-up work only."""


@hookspec
def challenge_closed(tenant_id, challenge_id):
    """A challenge's counting window closed; enqueue follow-up work only."""
