"""Ready-made rulesets reproducing the published rules of real events.

Every preset also checks the counting window, which the events state as "during the event period".
"""

from kindstride.rules.contract import FLAG, RulesetPreset

SUNDAY = 6


def _use(rule: str, **params) -> dict:
    return {"rule": rule, "params": params}


def _nationwide_charity_run(min_average_pace_s: int, min_split_pace_s: int) -> dict:
    """A running-only race whose editions differ in their pace limits.

    Published rules: synced within 72 hours of the activity's START and by the event's last day; at least
    1 km; no manual entries; average moving pace between the minimum and 15:00 min/km; no 1-km split faster
    than the minimum; Sunday activities count double if completed before 24:00 that Sunday.
    """
    return {
        "validation": [
            _use("allowed_sports", sports=["run"]),
            _use("counting_window"),
            _use("sync_deadline", max_hours_after_start=72, grace_hours=0),
            _use("no_manual_entries"),
            _use("distance_limits", min_m=1000),
            _use("average_pace_window", windows={"run": {"min_s_per_km": min_average_pace_s, "max_s_per_km": 900}}),
            _use("split_pace_limit", min_s_per_km=min_split_pace_s),
        ],
        "scoring": _use("distance"),
        "multipliers": [_use("weekday_multiplier", weekdays=[SUNDAY], factor="2", must_end_same_day=True)],
        "team_aggregation": _use("sum"),
    }


def ruleset_presets() -> list[RulesetPreset]:
    # Built afresh on each call: a caller editing a preset's ruleset must not change it for everyone else.
    return [
        RulesetPreset(
            name="vn-charity-run-2023",
            label="Nationwide charity run (2023 rules)",
            description="Running only, at least 1 km, average pace 3:30-15:00 min/km, no 1-km split faster than "
                        "3:00, synced within 72 h of the start, no manual entries, Sundays count double when "
                        "finished by midnight; distance, team total.",
            ruleset=_nationwide_charity_run(min_average_pace_s=210, min_split_pace_s=180),
        ),
        RulesetPreset(
            name="vn-charity-run-2024",
            label="Nationwide charity run (2024 rules)",
            description="As 2023 with stricter paces: average 4:00-15:00 min/km, no 1-km split faster than 3:30.",
            ruleset=_nationwide_charity_run(min_average_pace_s=240, min_split_pace_s=210),
        ),
        RulesetPreset(
            name="humanitarian-56-day",
            label="Humanitarian 56-day campaign",
            description="Walks and runs of at least 1 km with every kilometre at 4:00-20:00 min/km (a pace "
                        "window that no ride fits, so rides are not part of it); distance, team total.",
            ruleset={
                "validation": [
                    _use("allowed_sports", sports=["run", "walk"]),
                    _use("counting_window"),
                    _use("distance_limits", min_m=1000),
                    _use("split_pace_limit", min_s_per_km=240, max_s_per_km=1200),
                ],
                "scoring": _use("distance"),
                "multipliers": [],
                "team_aggregation": _use("sum"),
            },
        ),
        RulesetPreset(
            name="company-month",
            label="Company month challenge",
            description="Runs, walks and rides; manual entries are flagged for an organiser to review; "
                        "distance, teams ranked by average per member.",
            ruleset={
                "validation": [
                    _use("allowed_sports", sports=["run", "walk", "ride"]),
                    _use("counting_window"),
                    _use("no_manual_entries", outcome=FLAG),
                ],
                "scoring": _use("distance"),
                "multipliers": [],
                "team_aggregation": _use("average_per_member"),
            },
        ),
    ]
