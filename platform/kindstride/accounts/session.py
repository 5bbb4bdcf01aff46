"""Who is signed in: the session cookie of one tenant's site, or of the operator site."""

from functools import wraps

from flask import abort, g, redirect, request, session, url_for

from kindstride.accounts.models import Operator, User
from kindstride.accounts.services import roles_of
from kindstride.db import db


def sign_in(user):
    # A new session on every sign-in: nothing set before it (a planted session) survives.
    session.clear()
    session.permanent = True
    session.update(user_id=user.id, tenant_id=user.tenant_id, version=user.session_version)


def sign_in_operator(operator):
    session.clear()
    session.permanent = True
    session.update(operator_id=operator.id)


def sign_out():
    session.clear()


def load_signed_in():
    """before_request: g.user and g.roles for tenant sites, g.operator for the operator site."""
    g.user, g.roles, g.operator = None, frozenset(), None
    tenant = g.get("tenant")
    if tenant is not None and session.get("user_id"):
        user = db.session.get(User, session["user_id"]) if session.get("tenant_id") == tenant.id else None
        if user is None or user.is_disabled or user.session_version != session.get("version"):
            session.clear()
        else:
            g.user, g.roles = user, frozenset(roles_of(user))
    elif g.get("platform") and session.get("operator_id"):
        g.operator = db.session.get(Operator, session["operator_id"])
        if g.operator is None:
            session.clear()


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.user is None:
            return redirect(url_for("accounts.sign_in_page", next=request.full_path))
        return view(*args, **kwargs)

    return wrapper


def role_required(*roles):
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if g.user is None:
                return redirect(url_for("accounts.sign_in_page", next=request.full_path))
            if not g.roles.intersection(roles):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def operator_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.operator is None:
            return redirect(url_for("operator.sign_in_page"))
        return view(*args, **kwargs)

    return wrapper
