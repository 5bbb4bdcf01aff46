"""URL converters. `int` is bounded to PostgreSQL's BIGINT, so an id past it is a 404 instead of a
database error."""

from werkzeug.routing import IntegerConverter

BIGINT_MAX = 2**63 - 1


class DatabaseId(IntegerConverter):
    def __init__(self, map, *args, **kwargs):  # noqa: A002 (werkzeug's parameter name)
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(map, *args, **kwargs)


def init_converters(app):
    app.url_map.converters["int"] = DatabaseId
