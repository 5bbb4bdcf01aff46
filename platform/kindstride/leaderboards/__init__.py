"""Leaderboards: running totals per participant and team, kept exact by the evaluation of activities."""
