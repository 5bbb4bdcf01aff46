"""kindstride's built-in rule strategies, registered through the same entry point as third-party plugins
(`rules_plugins.core_rules`).

Strategies are pure functions of the contract (kindstride.rules.contract) and of their parameters as loaded
by their `params_schema`.
"""

from kindstride.hookspecs import hookimpl

from .multipliers import SCORE_MULTIPLIERS
from .pledges import PLEDGE_RULES
from .presets import ruleset_presets
from .scoring import SCORING_RULES
from .teams import TEAM_AGGREGATIONS
from .validation import VALIDATION_RULES


@hookimpl
def register_validation_rules():
    return [rule() for rule in VALIDATION_RULES]


@hookimpl
def register_scoring_rules():
    return [rule() for rule in SCORING_RULES]


@hookimpl
def register_score_multipliers():
    return [multiplier() for multiplier in SCORE_MULTIPLIERS]


@hookimpl
def register_team_aggregations():
    return [aggregation() for aggregation in TEAM_AGGREGATIONS]


@hookimpl
def register_ruleset_presets():
    return ruleset_presets()


@hookimpl
def register_pledge_rules():
    return [rule() for rule in PLEDGE_RULES]
