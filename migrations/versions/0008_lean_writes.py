"""lean writes: fewer checks per inserted activity and result (an import writes a million of each)

- No tenant tables keep an index on tenant_id alone: UNIQUE (tenant_id, id) starts with it.
- activities and activity_results no longer reference tenants(id) directly: their references to a user and
  to an activity, both (tenant_id, x), prove the tenant already.
- A result references its registration by (tenant_id, challenge_id, registration_id): one check proves the
  registration and that it is in the result's challenge (it was two checks, and proved less).
- A result's uniqueness per (activity, challenge) is kept with the activity first, so the same index finds an
  activity's verdicts (one index instead of two).

Revision ID: 0008_lean_writes
Revises: 0007_theme_assets
Create Date: 2026-11-21 08:20:00.000000
"""

from alembic import op


revision = '0008_lean_writes'
down_revision = '0007_theme_assets'
branch_labels = None
depends_on = None

TENANT_TABLES = ('account_tokens', 'activities', 'activity_results', 'api_tokens', 'audit_log', 'beneficiaries',
                 'challenges', 'divisions', 'donations', 'fundraising_pages', 'ledger_entries', 'ledger_transactions',
                 'participant_totals', 'payments', 'pledges', 'registrations', 'ruleset_versions',
                 'strava_connections', 'team_totals', 'teams', 'tenant_secrets', 'theme_assets', 'user_roles', 'users',
                 'webhook_deliveries')


def upgrade():
    for table in TENANT_TABLES:
        op.drop_index(f'ix_{table}_tenant_id', table_name=table, if_exists=True)
    with op.batch_alter_table('registrations') as batch:
        batch.create_unique_constraint('uq_registrations_tenant_id_challenge_id_id', ['tenant_id', 'challenge_id', 'id'])
    with op.batch_alter_table('activities') as batch:
        batch.drop_constraint('fk_activities_tenant_id_tenants', type_='foreignkey')
    with op.batch_alter_table('activity_results') as batch:
        batch.drop_constraint('fk_activity_results_tenant_id_tenants', type_='foreignkey')
        batch.drop_constraint('fk_activity_results_tenant_id_challenge_id_challenges', type_='foreignkey')
        batch.drop_constraint('fk_activity_results_tenant_id_registration_id_registrations', type_='foreignkey')
        batch.create_foreign_key('fk_activity_results_registration_in_challenge', 'registrations',
                                 ['tenant_id', 'challenge_id', 'registration_id'], ['tenant_id', 'challenge_id', 'id'])
        batch.drop_constraint('uq_activity_results_tenant_id_challenge_id_activity_id', type_='unique')
        batch.drop_index('ix_activity_results_activity')
        batch.create_unique_constraint('uq_activity_results_tenant_id_activity_id_challenge_id',
                                       ['tenant_id', 'activity_id', 'challenge_id'])


def downgrade():
    with op.batch_alter_table('activity_results') as batch:
        batch.drop_constraint('uq_activity_results_tenant_id_activity_id_challenge_id', type_='unique')
        batch.create_index('ix_activity_results_activity', ['tenant_id', 'activity_id'], unique=False)
        batch.create_unique_constraint('uq_activity_results_tenant_id_challenge_id_activity_id',
                                       ['tenant_id', 'challenge_id', 'activity_id'])
        batch.drop_constraint('fk_activity_results_registration_in_challenge', type_='foreignkey')
        batch.create_foreign_key('fk_activity_results_tenant_id_registration_id_registrations', 'registrations',
                                 ['tenant_id', 'registration_id'], ['tenant_id', 'id'])
        batch.create_foreign_key('fk_activity_results_tenant_id_challenge_id_challenges', 'challenges',
                                 ['tenant_id', 'challenge_id'], ['tenant_id', 'id'])
        batch.create_foreign_key('fk_activity_results_tenant_id_tenants', 'tenants', ['tenant_id'], ['id'],
                                 ondelete='RESTRICT')
    with op.batch_alter_table('activities') as batch:
        batch.create_foreign_key('fk_activities_tenant_id_tenants', 'tenants', ['tenant_id'], ['id'], ondelete='RESTRICT')
    with op.batch_alter_table('registrations') as batch:
        batch.drop_constraint('uq_registrations_tenant_id_challenge_id_id', type_='unique')
    for table in TENANT_TABLES:
        op.create_index(f'ix_{table}_tenant_id', table, ['tenant_id'], unique=False)
