"""The emails accounts send: rendered in the tenant's language by a job, sent over SMTP."""

from flask import g, render_template
from flask_babel import force_locale, gettext

from kindstride.accounts.models import User
from kindstride.db import db
from kindstride.jobs import enqueue
from kindstride.mail import send_mail
from kindstride.tenancy.models import Tenant

SUBJECTS = {
    "confirm": lambda tenant: gettext("Confirm your email for %(site)s", site=tenant.name),
    "reset": lambda tenant: gettext("Reset your password for %(site)s", site=tenant.name),
}


def queue_account_email(user, kind, link):
    enqueue(send_account_email, user.id, kind, link, queue="high")


def send_account_email(user_id, kind, link):
    """A tenant job: the link carries a one-time token, so the job takes it rather than re-issuing one."""
    user = db.session.get(User, user_id)
    tenant = db.session.get(Tenant, user.tenant_id)
    g.tenant = tenant
    with force_locale(tenant.locale):
        subject = SUBJECTS[kind](tenant)
        body = render_template(f"accounts/email/{kind}.txt", user=user, tenant=tenant, link=link)
    send_mail(user.email, subject, body, reply_to=tenant.settings.get("contact_email"))
