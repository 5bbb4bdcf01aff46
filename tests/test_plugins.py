import inspect
import re
import textwrap

import pytest

from kindstride import hookspecs
from kindstride.plugins import REGISTRATION_HOOKS, PluginHost, PluginLoadError
from kindstride.tenancy.services import create_tenant


def _hooks():
    return {name: func for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(func, "kindstride_spec")}


def test_every_hook_is_documented_with_its_exact_signature():
    guide = _plugin_guide().read_text()
    for name, func in _hooks().items():
        assert func.__doc__ and func.__doc__.strip(), f"hook {name} has no docstring"
        signature = f"{name}{inspect.signature(func)}"
        assert re.search(rf"^### `{re.escape(signature)}`$", guide, re.M), f"the plugin guide lacks `{signature}`"
    documented = re.findall(r"^### `(\w+)\(", guide, re.M)
    assert sorted(documented) == sorted(_hooks()), "rules_plugins/README.md documents a hook that does not exist"


def _plugin_guide():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "rules_plugins" / "README.md"


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """An installed third-party plugin distribution (a real dist-info with entry points) on sys.path."""

    def install(**modules):
        dist = tmp_path / "kindstride_testplugins-1.0.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kindstride-testplugins\nVersion: 1.0\n")
        lines = ["[kindstride.plugins]"]
        for name, source in modules.items():
            (tmp_path / f"ks_test_{name}.py").write_text(textwrap.dedent(source))
            lines.append(f"{name} = ks_test_{name}")
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(tmp_path))

    return install


EXTRA_RULE = """
    from marshmallow import Schema
    from kindstride.hookspecs import hookimpl

    class Always:
        name = "always_accept"
        label = "Always accept"
        params_schema = Schema

        def check(self, activity, params):
            return []

    @hookimpl
    def register_validation_rules():
        return [Always()]
"""


def test_an_allowlisted_plugin_that_fails_to_load_stops_start_up(plugin_dist):
    plugin_dist(broken="raise ImportError('needs libfoo')\n")
    with pytest.raises(PluginLoadError, match=r"plugin 'broken' \(ks_test_broken\) failed to load: needs libfoo"):
        PluginHost(["core_rules", "broken"])


def test_an_allowlisted_plugin_that_is_not_installed_stops_start_up():
    with pytest.raises(PluginLoadError, match="'missing' is allowlisted in KINDSTRIDE_PLUGINS but no installed"):
        PluginHost(["missing"])


def test_installed_plugins_outside_the_allowlist_are_not_loaded(plugin_dist):
    plugin_dist(broken="raise ImportError('never imported')\n")
    assert PluginHost(["core_rules"]).plugin_names == ["core_rules"]


def test_a_hook_implementation_with_a_wrong_name_stops_start_up(plugin_dist):
    plugin_dist(typo="from kindstride.hookspecs import hookimpl\n@hookimpl\ndef register_validation_rulez():\n"
                     "    return []\n")
    with pytest.raises(PluginLoadError, match="unknown hook"):
        PluginHost(["typo"])


def test_strategies_come_only_from_plugins_the_tenant_enabled(app, plugin_dist):
    plugin_dist(extra=EXTRA_RULE)
    host = PluginHost(["core_rules", "extra"])
    with_extra = create_tenant("withextra", "With Extra")
    with_extra.settings = {**with_extra.settings, "plugins": ["core_rules", "extra"]}
    core_only = create_tenant("coreonly", "Core Only")
    core_only.settings = {**core_only.settings, "plugins": ["core_rules"]}
    assert "always_accept" in host.strategies("register_validation_rules", with_extra)
    assert "always_accept" not in host.strategies("register_validation_rules", core_only)
    assert "allowed_sports" in host.strategies("register_validation_rules", core_only)


def test_two_plugins_registering_one_name_stop_start_up(plugin_dist):
    plugin_dist(first=EXTRA_RULE, second=EXTRA_RULE)
    with pytest.raises(PluginLoadError, match="both register register_validation_rules 'always_accept'"):
        PluginHost(["first", "second"])


def test_each_app_has_its_own_plugin_manager(make_app):
    assert make_app().extensions["kindstride.plugins"] is not make_app().extensions["kindstride.plugins"]


def test_registration_hooks_are_all_hookspecs():
    assert set(REGISTRATION_HOOKS) <= set(_hooks())
