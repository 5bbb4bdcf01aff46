"""theme assets: files of a tenant's theme uploaded in its admin console (the logo), with row-level security

Revision ID: 0007_theme_assets
Revises: 0006_bench_indexes
Create Date: 2026-11-21 08:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

import kindstride.db
from kindstride.tenancy import rls


revision = '0007_theme_assets'
down_revision = '0006_bench_indexes'
branch_labels = None
depends_on = None


TENANT_TABLES = ('theme_assets',)


def upgrade():
    op.create_table('theme_assets',
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('content_type', sa.String(length=40), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('uploaded_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'uploaded_by_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_theme_assets_tenant_id_uploaded_by_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_theme_assets_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_theme_assets')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_theme_assets_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_theme_assets_tenant_id_name'))
    )
    op.create_index(op.f('ix_theme_assets_tenant_id'), 'theme_assets', ['tenant_id'], unique=False)

    for table in TENANT_TABLES:
        rls.apply(op, rls.enable_rls_statements(table))


def downgrade():
    op.drop_index(op.f('ix_theme_assets_tenant_id'), table_name='theme_assets')
    op.drop_table('theme_assets')
