"""Files of a tenant's theme uploaded through its admin console (the logo), kept in the database so every web
server of the site serves the same bytes."""

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kindstride.db import BigId, TenantOwned, UTCDateTime, db, utcnow


class ThemeAsset(TenantOwned, db.Model):
    """One uploaded file of a tenant's theme: `name` says which ("logo"); a new upload replaces the row.

    The bytes are an image re-encoded by the server (see kindstride.web.logos), never the file as sent."""

    __tablename__ = "theme_assets"
    tenant_refs = {"uploaded_by_id": "users"}
    extra_table_args = (sa.UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(sa.String(20))
    content_type: Mapped[str] = mapped_column(sa.String(40))
    digest: Mapped[str] = mapped_column(sa.String(64))  # sha256 of data, in the file's address
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    uploaded_by_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[object] = mapped_column(UTCDateTime, default=utcnow)
