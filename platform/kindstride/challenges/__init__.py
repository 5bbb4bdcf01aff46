"""Challenges: what is counted, when, by whom; teams, divisions, registrations and rulesets."""
