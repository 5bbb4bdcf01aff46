"""performance at scale: a version on each participant total (the leaderboard cache), and the indexes the
hot paths look rows up by (a participant's total, a team's total, an activity's verdicts)

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
    op.create_index('ix_participant_totals_registration', 'participant_totals', ['tenant_id', 'registration_id'],
                    unique=False)
    op.create_index('ix_team_totals_team', 'team_totals', ['tenant_id', 'team_id'], unique=False)
    op.create_index('ix_activity_results_activity', 'activity_results', ['tenant_id', 'activity_id'], unique=False)


def downgrade():
    op.drop_index('ix_activity_results_activity', table_name='activity_results')
    op.drop_index('ix_team_totals_team', table_name='team_totals')
    op.drop_index('ix_participant_totals_registration', table_name='participant_totals')
    with op.batch_alter_table('participant_totals') as batch:
        batch.drop_column('version')
