"""lean results: two indexes fewer to write per result (an import writes a million results)

- activity_results drops UNIQUE (tenant_id, id): nothing references a result, and the primary key keeps ids unique.
- The review queue index holds only what a moderator looks at (flagged results and open appeals), in the order the
  queue reads them, instead of every result by status (the queue's "flagged OR open appeal" could not use it).

Revision ID: 0009_lean_results
Revises: 0008_lean_writes
Create Date: 2026-11-21 11:10:00.000000
"""

import sqlalchemy as sa
from alembic import op


revision = '0009_lean_results'
down_revision = '0008_lean_writes'
branch_labels = None
depends_on = None

REVIEW_WHERE = "status = 'flagged' OR appeal_state = 'open'"


def upgrade():
    with op.batch_alter_table('activity_results') as batch:
        batch.drop_constraint('uq_activity_results_tenant_id_id', type_='unique')
        batch.drop_index('ix_activity_results_queue')
        batch.create_index('ix_activity_results_review', ['tenant_id', 'challenge_id', 'evaluated_at', 'id'],
                           unique=False, postgresql_where=sa.text(REVIEW_WHERE), sqlite_where=sa.text(REVIEW_WHERE))


def downgrade():
    with op.batch_alter_table('activity_results') as batch:
        batch.drop_index('ix_activity_results_review')
        batch.create_index('ix_activity_results_queue', ['tenant_id', 'challenge_id', 'status'], unique=False)
        batch.create_unique_constraint('uq_activity_results_tenant_id_id', ['tenant_id', 'id'])
