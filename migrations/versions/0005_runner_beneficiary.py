"""runner beneficiary: the partner charity a participant's kilometres raise money for

Revision ID: 0005_runner_beneficiary
Revises: 0004_money
Create Date: 2026-11-21 05:47:52.650715
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_runner_beneficiary'
down_revision = '0004_money'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('registrations') as batch:
        batch.add_column(sa.Column('beneficiary_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch.create_foreign_key(op.f('fk_registrations_tenant_id_beneficiary_id_beneficiaries'), 'beneficiaries', ['tenant_id', 'beneficiary_id'], ['tenant_id', 'id'])


def downgrade():
    with op.batch_alter_table('registrations') as batch:
        batch.drop_constraint(op.f('fk_registrations_tenant_id_beneficiary_id_beneficiaries'), type_='foreignkey')
        batch.drop_column('beneficiary_id')
