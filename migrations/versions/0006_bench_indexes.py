"""leaderboard cache: a version on each participant total

Revision ID: 0006_bench_indexes
Revises: 0005_runner_beneficiary
Create Date: 2026-11-21 06:40:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0006_bench_indexes'
down_revision = '0005_runner_beneficiary'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('participant_totals') as batch:
        batch.add_column(sa.Column('version', sa.BigInteger(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('participant_totals') as batch:
        batch.drop_column('version')
