"""The tenant admin's list of members and their roles."""

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from kindstride import audit
from kindstride.accounts import services
from kindstride.accounts.models import ROLES, User, UserRole
from kindstride.accounts.session import role_required
from kindstride.db import db
from kindstride.web.sites import tenant_site_only

bp = Blueprint("members", __name__, template_folder="templates", url_prefix="/admin/members")
bp.before_request(tenant_site_only)
PAGE_SIZE = 50


@bp.route("/")
@role_required("admin")
def list_page():
    query = (request.args.get("q") or "").strip()[:100]
    page = max(request.args.get("page", 1, type=int), 1)
    statement = sa.select(User).order_by(User.name, User.id)
    if query:
        pattern = f"%{query.lower()}%"
        statement = statement.where(sa.or_(sa.func.lower(User.name).like(pattern), User.email.like(pattern)))
    users = db.session.scalars(statement.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)).all()
    roles = {}
    if users:
        rows = db.session.execute(sa.select(UserRole.user_id, UserRole.role)
                                  .where(UserRole.user_id.in_([u.id for u in users])))
        for user_id, role in rows:
            roles.setdefault(user_id, set()).add(role)
    return render_template("accounts/members.html", users=users[:PAGE_SIZE], roles=roles, all_roles=ROLES,
                           query=query, page=page, has_next=len(users) > PAGE_SIZE)


@bp.route("/<int:user_id>/roles", methods=["POST"])
@role_required("admin")
def set_roles(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    wanted = set(request.form.getlist("roles")) & set(ROLES)
    if user.id == g.user.id and "admin" not in wanted:
        flash(_("You cannot remove your own admin role."), "error")
        return redirect(url_for("members.list_page"))
    before = services.roles_of(user)
    for role in ROLES:
        if role in wanted:
            services.grant_role(user, role)
        else:
            services.revoke_role(user, role)
    if before != wanted:
        audit.record("roles.changed", "user", user.id, granted=sorted(wanted - before), revoked=sorted(before - wanted))
    db.session.commit()
    flash(_("Roles of %(name)s saved.", name=user.name), "success")
    return redirect(url_for("members.list_page"))
