"""Running one job: a fresh app context, the job's tenant scope, commit on success."""

from importlib import import_module

from flask import current_app

from kindstride.db import db
from kindstride.tenancy.scope import tenant_scope


def resolve(path):
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


def run_in_app(app, path, tenant_id, args):
    func = resolve(path)
    with app.app_context():
        try:
            if tenant_id is None:
                result = func(*args)
            else:
                with tenant_scope(tenant_id):
                    result = func(*args)
            db.session.commit()
            return result
        except BaseException:
            db.session.rollback()
            raise


def run_job(path, tenant_id, args):
    """The function rq runs; the worker process holds the app (see kindstride.jobs.cli)."""
    return run_in_app(current_app._get_current_object(), path, tenant_id, args)
