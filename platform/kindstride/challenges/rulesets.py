"""Rulesets as data: which strategies a challenge uses, with which parameters, checked at save time."""

from dataclasses import dataclass, field

from flask import current_app
from marshmallow import ValidationError

from kindstride.plugins import plugin_host
from kindstride.tenancy.settings_schema import flatten_errors

# ruleset key -> (registration hook, one strategy or a list)
SECTIONS = {
    "validation": ("register_validation_rules", True),
    "scoring": ("register_scoring_rules", False),
    "multipliers": ("register_score_multipliers", True),
    "team_aggregation": ("register_team_aggregations", False),
}


class RulesetError(ValueError):
    """A ruleset cannot be used; `errors` are 'path: message' lines naming the faulty part."""

    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ResolvedRuleset:
    """A ruleset with its strategies looked up: what evaluation runs."""

    validation: tuple  # ((strategy, params), ...)
    scoring: tuple  # (strategy, params)
    multipliers: tuple
    team_aggregation: tuple
    # The validation rules in the order they are asked: those that do not read the same-day figures, then those
    # that do (see ValidationRule.uses_same_day).
    day_independent: tuple = field(init=False)
    day_dependent: tuple = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "day_independent", tuple(p for p in self.validation if asked_in_batches(p[0])))
        object.__setattr__(self, "day_dependent", tuple(p for p in self.validation if not asked_in_batches(p[0])))


def asked_in_batches(rule) -> bool:
    """Whether a validation rule says it never reads the same-day figures and can be asked about many activities
    at once. A plugin's rule need not subclass ValidationRule: one that says neither is asked one at a time."""
    return getattr(rule, "uses_same_day", True) is False and hasattr(rule, "check_many")


def _entries(ruleset, key, many):
    value = ruleset.get(key)
    if value is None:
        return [] if many else None
    return value if many else [value]


def normalise_ruleset(ruleset, tenant) -> dict:
    """The ruleset with every strategy's parameters loaded by its schema; raises RulesetError."""
    if not isinstance(ruleset, dict):
        raise RulesetError(["ruleset: must be an object with validation, scoring, multipliers, team_aggregation"])
    errors = [f"{key}: unknown section" for key in ruleset if key not in SECTIONS]
    normalised = {}
    for key, (hook, many) in SECTIONS.items():
        available = plugin_host().strategies(hook, tenant)
        entries = _entries(ruleset, key, many)
        if entries is None:
            errors.append(f"{key}: is required")
            continue
        if not isinstance(entries, list):
            errors.append(f"{key}: must be a list")
            continue
        loaded = []
        for index, entry in enumerate(entries):
            path = f"{key}[{index}]" if many else key
            if not isinstance(entry, dict) or not isinstance(entry.get("rule"), str):
                errors.append(f"{path}: must be an object with a 'rule' name and 'params'")
                continue
            strategy = available.get(entry["rule"])
            if strategy is None:
                errors.append(f"{path}.rule: {entry['rule']!r} is not available here "
                              f"(choose from {', '.join(sorted(available)) or 'none'})")
                continue
            try:
                params = strategy.params_schema().load(entry.get("params") or {})
            except ValidationError as error:
                errors.extend(flatten_errors(error.messages, prefix=f"{path}.params."))
                continue
            loaded.append({"rule": strategy.name, "params": params})
        normalised[key] = loaded if many else (loaded[0] if loaded else None)
    if errors:
        raise RulesetError(errors)
    return normalised


def resolve(ruleset, tenant) -> ResolvedRuleset:
    """Look the strategies up; a missing one raises RulesetError so scoring freezes instead of guessing."""
    missing = []
    resolved = {}
    for key, (hook, many) in SECTIONS.items():
        available = plugin_host().strategies(hook, tenant)
        pairs = []
        for entry in _entries(ruleset, key, many) or []:
            strategy = available.get(entry["rule"])
            if strategy is None:
                missing.append(f"{key}: strategy {entry['rule']!r} is not installed or not enabled")
            else:
                pairs.append((strategy, strategy.params_schema().load(entry.get("params") or {})))
        resolved[key] = tuple(pairs) if many else (pairs[0] if pairs else None)
    if missing:
        raise RulesetError(missing)
    return ResolvedRuleset(**resolved)


def resolve_version(challenge_id, version, tenant, load_ruleset) -> ResolvedRuleset:
    """resolve() of one version of a challenge's ruleset, kept per app (each app has its own plugins).

    A version never changes (a change is a new version), so the tenant, its enabled plugins, the challenge
    and the version name the result; `load_ruleset()` reads the stored ruleset only when it is not kept yet.
    A ruleset that cannot be resolved raises RulesetError every time (it is never kept).
    """
    cache = current_app.extensions.setdefault("kindstride.resolved_rulesets", {})
    key = (tenant.id, tuple(sorted(tenant.enabled_plugins)), challenge_id, version)
    resolved = cache.get(key)
    if resolved is None:
        resolved = resolve(load_ruleset(), tenant)
        if len(cache) >= RESOLVED_KEPT:
            cache.clear()
        cache[key] = resolved
    return resolved


RESOLVED_KEPT = 1000


def presets(tenant):
    """Ruleset presets from the tenant's enabled plugins, by name."""
    return plugin_host().strategies("register_ruleset_presets", tenant)
