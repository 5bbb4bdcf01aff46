"""Shared pieces of the API: errors that name the field, and looking up a challenge by slug."""

from flask_smorest import abort

from kindstride.challenges.services import get_challenge


def refuse(error, status=422):
    """Answer a domain error (with 'field: message' lines) as a 4xx naming the fields."""
    errors = getattr(error, "errors", None) or [str(error)]
    abort(status, message="; ".join(errors), errors={"fields": errors})


def challenge_or_404(slug):
    challenge = get_challenge(slug)
    if challenge is None:
        abort(404, message=f"challenge: no challenge {slug!r} here")
    return challenge
