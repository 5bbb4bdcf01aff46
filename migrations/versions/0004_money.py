"""money

Revision ID: 0004_money
Revises: 0003_strava
Create Date: 2026-11-21 05:26:42.198146
"""

from alembic import op
import sqlalchemy as sa
from flask import current_app

import kindstride.db
from kindstride.tenancy import rls


revision = '0004_money'
down_revision = '0003_strava'
branch_labels = None
depends_on = None


TENANT_TABLES = ('ledger_transactions', 'payments', 'webhook_deliveries', 'beneficiaries', 'ledger_entries', 'pledges', 'donations', 'fundraising_pages')

# Checked at commit (deferred): a transaction whose entries do not sum to zero cannot be stored.
BALANCED_TRANSACTIONS = """
CREATE OR REPLACE FUNCTION ledger_transaction_balances() RETURNS trigger AS $$
BEGIN
  IF (SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE transaction_id = NEW.transaction_id) <> 0 THEN
    RAISE EXCEPTION 'ledger transaction % does not balance to zero', NEW.transaction_id;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER ledger_entries_balance AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();
"""


def upgrade():
    op.create_table('ledger_transactions',
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('memo', sa.String(length=500), nullable=False),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ledger_transactions_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_ledger_transactions_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'reference', name=op.f('uq_ledger_transactions_tenant_id_reference'))
    )
    op.create_index(op.f('ix_ledger_transactions_tenant_id'), 'ledger_transactions', ['tenant_id'], unique=False)
    op.create_table('payments',
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('gateway', sa.String(length=30), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('gateway_ref', sa.String(length=100), nullable=True),
    sa.Column('income_account', sa.String(length=120), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=False),
    sa.Column('failure_message', sa.String(length=500), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payments_positive_amount')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_payments_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('tenant_id', 'gateway', 'gateway_ref', name=op.f('uq_payments_tenant_id_gateway_gateway_ref')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_payments_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_payments_tenant_id_idempotency_key')),
    sa.UniqueConstraint('tenant_id', 'reference', name=op.f('uq_payments_tenant_id_reference'))
    )
    op.create_index(op.f('ix_payments_tenant_id'), 'payments', ['tenant_id'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('gateway', sa.String(length=30), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('outcome', sa.String(length=30), nullable=False),
    sa.Column('received_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webhook_deliveries_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('tenant_id', 'gateway', 'event_id', name=op.f('uq_webhook_deliveries_tenant_id_gateway_event_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_webhook_deliveries_tenant_id_id'))
    )
    op.create_index(op.f('ix_webhook_deliveries_tenant_id'), 'webhook_deliveries', ['tenant_id'], unique=False)
    op.create_table('beneficiaries',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('website', sa.String(length=300), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_beneficiaries_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_beneficiaries_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_beneficiaries')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'name', name=op.f('uq_beneficiaries_tenant_id_challenge_id_name')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_beneficiaries_tenant_id_id'))
    )
    op.create_index(op.f('ix_beneficiaries_tenant_id'), 'beneficiaries', ['tenant_id'], unique=False)
    op.create_table('ledger_entries',
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account', sa.String(length=120), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_ledger_entries_nonzero')),
    sa.ForeignKeyConstraint(['tenant_id', 'transaction_id'], ['ledger_transactions.tenant_id', 'ledger_transactions.id'], name=op.f('fk_ledger_entries_tenant_id_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ledger_entries_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_ledger_entries_tenant_id_id'))
    )
    op.create_index('ix_ledger_entries_account', 'ledger_entries', ['tenant_id', 'account'], unique=False)
    op.create_index(op.f('ix_ledger_entries_tenant_id'), 'ledger_entries', ['tenant_id'], unique=False)
    op.create_index('ix_ledger_entries_transaction', 'ledger_entries', ['tenant_id', 'transaction_id'], unique=False)
    op.create_table('pledges',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sponsor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sponsor_name', sa.String(length=200), nullable=False),
    sa.Column('rule', sa.String(length=60), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('beneficiary_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('division_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'beneficiary_id'], ['beneficiaries.tenant_id', 'beneficiaries.id'], name=op.f('fk_pledges_tenant_id_beneficiary_id_beneficiaries')),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_pledges_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'division_id'], ['divisions.tenant_id', 'divisions.id'], name=op.f('fk_pledges_tenant_id_division_id_divisions')),
    sa.ForeignKeyConstraint(['tenant_id', 'sponsor_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_pledges_tenant_id_sponsor_id_users')),
    sa.ForeignKeyConstraint(['tenant_id', 'team_id'], ['teams.tenant_id', 'teams.id'], name=op.f('fk_pledges_tenant_id_team_id_teams')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_pledges_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pledges')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_pledges_tenant_id_id'))
    )
    op.create_index(op.f('ix_pledges_tenant_id'), 'pledges', ['tenant_id'], unique=False)
    op.create_table('donations',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('registration_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('beneficiary_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('donor_name', sa.String(length=200), nullable=False),
    sa.Column('donor_email', sa.String(length=254), nullable=False),
    sa.Column('anonymous', sa.Boolean(), nullable=False),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_donations_positive_amount')),
    sa.ForeignKeyConstraint(['tenant_id', 'beneficiary_id'], ['beneficiaries.tenant_id', 'beneficiaries.id'], name=op.f('fk_donations_tenant_id_beneficiary_id_beneficiaries')),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_donations_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'payment_id'], ['payments.tenant_id', 'payments.id'], name=op.f('fk_donations_tenant_id_payment_id_payments')),
    sa.ForeignKeyConstraint(['tenant_id', 'registration_id'], ['registrations.tenant_id', 'registrations.id'], name=op.f('fk_donations_tenant_id_registration_id_registrations')),
    sa.ForeignKeyConstraint(['tenant_id', 'team_id'], ['teams.tenant_id', 'teams.id'], name=op.f('fk_donations_tenant_id_team_id_teams')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_donations_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_donations')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_donations_tenant_id_id'))
    )
    op.create_index(op.f('ix_donations_tenant_id'), 'donations', ['tenant_id'], unique=False)
    op.create_table('fundraising_pages',
    sa.Column('registration_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('goal_amount', sa.BigInteger(), nullable=True),
    sa.Column('story', sa.Text(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'registration_id'], ['registrations.tenant_id', 'registrations.id'], name=op.f('fk_fundraising_pages_tenant_id_registration_id_registrations')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_fundraising_pages_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fundraising_pages')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_fundraising_pages_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'registration_id', name=op.f('uq_fundraising_pages_tenant_id_registration_id'))
    )
    op.create_index(op.f('ix_fundraising_pages_tenant_id'), 'fundraising_pages', ['tenant_id'], unique=False)
    with op.batch_alter_table('registrations') as batch:
        batch.add_column(sa.Column('status', sa.String(length=20), server_default='active', nullable=False))
        batch.add_column(sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch.create_foreign_key(op.f('fk_registrations_tenant_id_payment_id_payments'), 'payments', ['tenant_id', 'payment_id'], ['tenant_id', 'id'])

    for table in TENANT_TABLES:
        rls.apply(op, rls.enable_rls_statements(table))
    rls.apply(op, rls.append_only_statements(("ledger_transactions", "ledger_entries"),
                                             current_app.config["DB_APP_ROLE"]))
    rls.apply(op, [BALANCED_TRANSACTIONS])


def downgrade():
    rls.apply(op, ["DROP TRIGGER IF EXISTS ledger_entries_balance ON ledger_entries",
                   "DROP FUNCTION IF EXISTS ledger_transaction_balances()"])
    with op.batch_alter_table('registrations') as batch:
        batch.drop_constraint(op.f('fk_registrations_tenant_id_payment_id_payments'), type_='foreignkey')
        batch.drop_column('payment_id')
        batch.drop_column('status')
    op.drop_index(op.f('ix_fundraising_pages_tenant_id'), table_name='fundraising_pages')
    op.drop_table('fundraising_pages')
    op.drop_index(op.f('ix_donations_tenant_id'), table_name='donations')
    op.drop_table('donations')
    op.drop_index(op.f('ix_pledges_tenant_id'), table_name='pledges')
    op.drop_table('pledges')
    op.drop_index('ix_ledger_entries_transaction', table_name='ledger_entries')
    op.drop_index(op.f('ix_ledger_entries_tenant_id'), table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_account', table_name='ledger_entries')
    op.drop_table('ledger_entries')
    op.drop_index(op.f('ix_beneficiaries_tenant_id'), table_name='beneficiaries')
    op.drop_table('beneficiaries')
    op.drop_index(op.f('ix_webhook_deliveries_tenant_id'), table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index(op.f('ix_payments_tenant_id'), table_name='payments')
    op.drop_table('payments')
    op.drop_index(op.f('ix_ledger_transactions_tenant_id'), table_name='ledger_transactions')
    op.drop_table('ledger_transactions')
