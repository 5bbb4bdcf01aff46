"""The server-rendered site: layout, theming, the tenant home page and error pages."""
