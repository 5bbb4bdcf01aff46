"""Reason codes as sentences in the tenant's language ("average pace 3:12 min/km is faster than 4:00")."""

from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l

MESSAGES = {
    "sport_not_allowed": _l("%(sport)s does not count in this challenge"),
    "pace_too_fast": _l("average pace %(pace)s min/km is faster than the %(limit)s limit"),
    "pace_too_slow": _l("average pace %(pace)s min/km is slower than the %(limit)s limit"),
    "split_too_fast": _l("kilometre %(km)s at %(pace)s min/km is faster than the %(limit)s limit"),
    "split_too_slow": _l("kilometre %(km)s at %(pace)s min/km is slower than the %(limit)s limit"),
    "splits_unavailable": _l("the recording has no per-kilometre data to check"),
    "too_short": _l("%(distance)s km is shorter than the %(limit)s km minimum"),
    "too_long": _l("%(distance)s km is longer than the %(limit)s km maximum"),
    "before_window": _l("the activity started before the challenge began"),
    "after_window": _l("the activity ended after the challenge closed"),
    "in_future": _l("the activity starts in the future"),
    "synced_too_late": _l("the activity was synced more than %(hours)s hours after it ended"),
    "manual_not_allowed": _l("manual entries do not count in this challenge"),
    "no_gps": _l("the activity has no GPS track"),
    "indoor_activity": _l("indoor (treadmill or trainer) activity"),
    "daily_activity_limit": _l("more than %(limit)s activities on one day"),
    "daily_distance_limit": _l("more than %(limit)s km on one day"),
    "too_much_paused_time": _l("the activity was paused for too long"),
    "duplicate_recording": _l("the same run was also recorded by another device; it counts once"),
    "before_team_switch": _l("recorded before your team switch, which reset your kilometres"),
}
PACE_KEYS = ("pace", "limit_pace", "pace_s_per_km", "limit_s_per_km")


def _pace(seconds):
    seconds = round(float(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _display_params(params):
    shown = {}
    for key, value in params.items():
        if key.endswith("_s_per_km"):
            shown["pace" if key.startswith(("pace", "split_pace")) else "limit"] = _pace(value)
        elif key.endswith("_m"):
            shown["distance" if not key.startswith(("limit", "min", "max")) else "limit"] = \
                format_decimal(round(value / 1000, 2))
        elif key == "sports" or isinstance(value, list):
            shown[key] = ", ".join(map(str, value))
        else:
            shown[key] = value
    return shown


def reason_message(reason: dict) -> str:
    template = MESSAGES.get(reason["code"])
    if template is None:
        return reason["code"].replace("_", " ")
    try:
        return str(template) % _display_params(reason.get("params") or {})
    except (KeyError, TypeError, ValueError):
        # A plugin's parameters that the sentence does not know: the code still says what happened.
        return reason["code"].replace("_", " ")
