"""kindstride: virtual sport challenges that raise money, for many tenants at once."""

from kindstride.app import create_app

__all__ = ["create_app"]
