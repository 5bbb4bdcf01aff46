"""strava

Revision ID: 0003_strava
Revises: 0002_challenges
Create Date: 2026-11-21 05:21:10.779763
"""

from alembic import op
import sqlalchemy as sa

import kindstride.db
from kindstride.tenancy import rls


revision = '0003_strava'
down_revision = '0002_challenges'
branch_labels = None
depends_on = None


# strava_athlete_routes is a platform routing table (the webhook reads it before any tenant is known): no RLS.
TENANT_TABLES = ('strava_connections',)


def upgrade():
    op.create_table('strava_athlete_routes',
    sa.Column('athlete_id', sa.String(length=20), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_strava_athlete_routes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('athlete_id', name=op.f('pk_strava_athlete_routes'))
    )
    op.create_index(op.f('ix_strava_athlete_routes_tenant_id'), 'strava_athlete_routes', ['tenant_id'], unique=False)
    op.create_table('strava_connections',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('athlete_id', sa.String(length=20), nullable=False),
    sa.Column('access_token', sa.Text(), nullable=True),
    sa.Column('refresh_token', sa.Text(), nullable=True),
    sa.Column('expires_at', kindstride.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('revoked_at', kindstride.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'user_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_strava_connections_tenant_id_user_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_strava_connections_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_strava_connections')),
    sa.UniqueConstraint('tenant_id', 'athlete_id', name=op.f('uq_strava_connections_tenant_id_athlete_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_strava_connections_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'user_id', name=op.f('uq_strava_connections_tenant_id_user_id'))
    )
    op.create_index(op.f('ix_strava_connections_tenant_id'), 'strava_connections', ['tenant_id'], unique=False)

    for table in TENANT_TABLES:
        rls.apply(op, rls.enable_rls_statements(table))


def downgrade():
    op.drop_index(op.f('ix_strava_connections_tenant_id'), table_name='strava_connections')
    op.drop_table('strava_connections')
    op.drop_index(op.f('ix_strava_athlete_routes_tenant_id'), table_name='strava_athlete_routes')
    op.drop_table('strava_athlete_routes')
