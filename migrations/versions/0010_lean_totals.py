"""lean totals: two indexes fewer to write on every update of a participant's total (an import updates 350,000)

- UNIQUE (tenant_id, registration_id) replaces UNIQUE (tenant_id, challenge_id, registration_id) and the index on
  (tenant_id, registration_id): a registration is in one challenge, so both say the same, and one index serves
  the lookups by registration.
- participant_totals drops UNIQUE (tenant_id, id): nothing references a total, and the primary key keeps ids
  unique.

Revision ID: 0010_lean_totals
Revises: 0009_lean_results
Create Date: 2026-11-21 19:55:00.000000
"""

from alembic import op


revision = '0010_lean_totals'
down_revision = '0009_lean_results'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('participant_totals') as batch:
        batch.create_unique_constraint('uq_participant_totals_tenant_id_registration_id',
                                       ['tenant_id', 'registration_id'])
        batch.drop_index('ix_participant_totals_registration')
        batch.drop_constraint('uq_participant_totals_tenant_id_challenge_id_registration_id', type_='unique')
        batch.drop_constraint('uq_participant_totals_tenant_id_id', type_='unique')


def downgrade():
    with op.batch_alter_table('participant_totals') as batch:
        batch.create_unique_constraint('uq_participant_totals_tenant_id_id', ['tenant_id', 'id'])
        batch.create_unique_constraint('uq_participant_totals_tenant_id_challenge_id_registration_id',
                                       ['tenant_id', 'challenge_id', 'registration_id'])
        batch.create_index('ix_participant_totals_registration', ['tenant_id', 'registration_id'], unique=False)
        batch.drop_constraint('uq_participant_totals_tenant_id_registration_id', type_='unique')
