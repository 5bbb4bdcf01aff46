"""Loading plugins: one pluggy PluginManager per app, from the `kindstride.plugins` entry points.

Only allowlisted entry points are loaded (KINDSTRIDE_PLUGINS); one that is missing or fails to load
stops start-up. The built-ins in rules_plugins/ load the same way as third-party packages.
"""

from importlib.metadata import entry_points

import pluggy
from flask import current_app

from kindstride import hookspecs

ENTRY_POINT_GROUP = "kindstride.plugins"
REGISTRATION_HOOKS = (
    "register_validation_rules",
    "register_scoring_rules",
    "register_score_multipliers",
    "register_ruleset_presets",
    "register_team_aggregations",
    "register_pledge_rules",
    "register_payment_gateways",
    "register_activity_sources",
)


class PluginLoadError(RuntimeError):
    pass


class PluginHost:
    """The app's plugin manager and the strategies its plugins registered, by kind and plugin."""

    def __init__(self, allowlist):
        self.manager = pluggy.PluginManager("kindstride")
        self.manager.add_hookspecs(hookspecs)
        available = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        for name in allowlist:
            entry_point = available.get(name)
            if entry_point is None:
                raise PluginLoadError(
                    f"plugin {name!r} is allowlisted in KINDSTRIDE_PLUGINS but no installed package provides "
                    f"it in the entry-point group {ENTRY_POINT_GROUP!r}"
                )
            try:
                module = entry_point.load()
                self.manager.register(module, name=name)
            except Exception as error:
                raise PluginLoadError(f"plugin {name!r} ({entry_point.value}) failed to load: {error}") from error
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            raise PluginLoadError(f"a plugin implements an unknown hook: {error}") from error
        self._strategies = {hook: self._collect(hook) for hook in REGISTRATION_HOOKS}

    def _collect(self, hook_name):
        strategies = {}
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            for strategy in impl.function() or []:
                if strategy.name in strategies:
                    other = strategies[strategy.name][0]
                    raise PluginLoadError(
                        f"plugins {other!r} and {impl.plugin_name!r} both register {hook_name} {strategy.name!r}"
                    )
                strategies[strategy.name] = (impl.plugin_name, strategy)
        return strategies

    @property
    def plugin_names(self):
        return sorted(name for name, _plugin in self.manager.list_name_plugin())

    def strategies(self, hook_name, tenant):
        """The strategies of one kind that this tenant may use: only from its enabled plugins."""
        enabled = set(tenant.enabled_plugins)
        return {
            name: strategy
            for name, (plugin, strategy) in sorted(self._strategies[hook_name].items())
            if plugin in enabled
        }


def plugin_host() -> PluginHost:
    return current_app.extensions["kindstride.plugins"]


def init_plugins(app):
    app.extensions["kindstride.plugins"] = PluginHost(app.config["PLUGINS"])
