"""Languages, dates, numbers and money per tenant, with Flask-Babel.

The translation catalogues are kept as .po files; they are compiled into the instance folder when the
.po is newer than the compiled file, so a checkout runs without a build step.
"""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import g
from flask_babel import Babel

SOURCE = Path(__file__).parent / "translations"


def compile_catalogues(target: Path):
    for po_path in SOURCE.glob("*/LC_MESSAGES/*.po"):
        mo_path = target / po_path.relative_to(SOURCE).with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file)
        temporary = mo_path.with_suffix(".mo.tmp")
        with temporary.open("wb") as mo_file:
            write_mo(mo_file, catalog)
        temporary.replace(mo_path)  # atomic, so a concurrent worker never reads half a file


def _tenant_locale():
    tenant = getattr(g, "tenant", None)
    return tenant.locale if tenant else "en"


def _tenant_timezone():
    tenant = getattr(g, "tenant", None)
    return tenant.timezone if tenant else "UTC"


def init_i18n(app):
    target = Path(app.instance_path) / "translations"
    compile_catalogues(target)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(target)
    Babel(app, locale_selector=_tenant_locale, timezone_selector=_tenant_timezone)
