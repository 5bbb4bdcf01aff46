"""challenges

Revision ID: 0002_challenges
Revises: 0001_foundation
Create Date: 2026-11-21 05:09:00.666391
"""

from alembic import op
import sqlalchemy as sa

import kindstride.db
from kindstride.tenancy import rls


revision = '0002_challenges'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


TENANT_TABLES = ('challenges', 'activities', 'audit_log', 'divisions', 'ruleset_versions', 'teams', 'registrations', 'team_totals', 'activity_results', 'participant_totals')


def upgrade():
    op.create_table('challenges',
    sa.Column('slug', sa.String(length=80), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('sports', sa.JSON(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('registration_opens_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('registration_closes_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('counting_start', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('counting_end', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('goal_m', sa.BigInteger(), nullable=True),
    sa.Column('team_size_cap', sa.Integer(), nullable=True),
    sa.Column('team_switch_policy', sa.String(length=10), nullable=False),
    sa.Column('allow_individual', sa.Boolean(), nullable=False),
    sa.Column('allow_teams', sa.Boolean(), nullable=False),
    sa.Column('entry_fee_minor', sa.BigInteger(), nullable=True),
    sa.Column('qualifiers', sa.JSON(), nullable=False),
    sa.Column('ruleset_version', sa.Integer(), nullable=False),
    sa.Column('scoring_frozen_reason', sa.Text(), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('counting_end > counting_start', name=op.f('ck_challenges_counting_window')),
    sa.CheckConstraint('registration_closes_at > registration_opens_at', name=op.f('ck_challenges_registration_window')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_challenges_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_challenges')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_challenges_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'slug', name=op.f('uq_challenges_tenant_id_slug'))
    )
    op.create_index(op.f('ix_challenges_tenant_id'), 'challenges', ['tenant_id'], unique=False)
    op.create_table('activities',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('sport', sa.String(length=20), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('start', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('elapsed_s', sa.Double(), nullable=False),
    sa.Column('moving_s', sa.Double(), nullable=False),
    sa.Column('distance_m', sa.Double(), nullable=False),
    sa.Column('has_gps', sa.Boolean(), nullable=False),
    sa.Column('is_indoor', sa.Boolean(), nullable=False),
    sa.Column('split_paces', sa.JSON(), nullable=False),
    sa.Column('device', sa.String(length=200), nullable=True),
    sa.Column('file_name', sa.String(length=255), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=True),
    sa.Column('owner_only', sa.Boolean(), nullable=False),
    sa.Column('duplicate_of_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('received_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'duplicate_of_id'], ['activities.tenant_id', 'activities.id'], name=op.f('fk_activities_tenant_id_duplicate_of_id_activities')),
    sa.ForeignKeyConstraint(['tenant_id', 'user_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_activities_tenant_id_user_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_activities_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activities')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_activities_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'user_id', 'fingerprint', name=op.f('uq_activities_tenant_id_user_id_fingerprint'))
    )
    op.create_index(op.f('ix_activities_tenant_id'), 'activities', ['tenant_id'], unique=False)
    op.create_index('ix_activities_user_start', 'activities', ['tenant_id', 'user_id', 'start'], unique=False)
    op.create_table('audit_log',
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('subject_type', sa.String(length=40), nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'actor_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_audit_log_tenant_id_actor_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_log_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_audit_log_tenant_id_id'))
    )
    op.create_index('ix_audit_log_subject', 'audit_log', ['tenant_id', 'subject_type', 'subject_id'], unique=False)
    op.create_index(op.f('ix_audit_log_tenant_id'), 'audit_log', ['tenant_id'], unique=False)
    op.create_table('divisions',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_divisions_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_divisions_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_divisions')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'name', name=op.f('uq_divisions_tenant_id_challenge_id_name')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_divisions_tenant_id_id'))
    )
    op.create_index(op.f('ix_divisions_tenant_id'), 'divisions', ['tenant_id'], unique=False)
    op.create_table('ruleset_versions',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('ruleset', sa.JSON(), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_ruleset_versions_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'created_by_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_ruleset_versions_tenant_id_created_by_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_ruleset_versions_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ruleset_versions')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'version', name=op.f('uq_ruleset_versions_tenant_id_challenge_id_version')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_ruleset_versions_tenant_id_id'))
    )
    op.create_index(op.f('ix_ruleset_versions_tenant_id'), 'ruleset_versions', ['tenant_id'], unique=False)
    op.create_table('teams',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('division_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('join_code', sa.String(length=16), nullable=False),
    sa.Column('captain_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'captain_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_teams_tenant_id_captain_id_users')),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_teams_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'division_id'], ['divisions.tenant_id', 'divisions.id'], name=op.f('fk_teams_tenant_id_division_id_divisions')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_teams_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'name', name=op.f('uq_teams_tenant_id_challenge_id_name')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_teams_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'join_code', name=op.f('uq_teams_tenant_id_join_code'))
    )
    op.create_index(op.f('ix_teams_tenant_id'), 'teams', ['tenant_id'], unique=False)
    op.create_table('registrations',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('bib', sa.Integer(), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('gender', sa.String(length=10), nullable=True),
    sa.Column('birth_year', sa.Integer(), nullable=True),
    sa.Column('counts_from', kindstride.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('registered_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_registrations_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'team_id'], ['teams.tenant_id', 'teams.id'], name=op.f('fk_registrations_tenant_id_team_id_teams')),
    sa.ForeignKeyConstraint(['tenant_id', 'user_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_registrations_tenant_id_user_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_registrations_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registrations')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'bib', name=op.f('uq_registrations_tenant_id_challenge_id_bib')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'user_id', name=op.f('uq_registrations_tenant_id_challenge_id_user_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_registrations_tenant_id_id'))
    )
    op.create_index(op.f('ix_registrations_team_id'), 'registrations', ['team_id'], unique=False)
    op.create_index(op.f('ix_registrations_tenant_id'), 'registrations', ['tenant_id'], unique=False)
    op.create_table('team_totals',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('division_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('score', sa.BigInteger(), nullable=False),
    sa.Column('distance_m', sa.BigInteger(), nullable=False),
    sa.Column('reached_at', kindstride.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_team_totals_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'division_id'], ['divisions.tenant_id', 'divisions.id'], name=op.f('fk_team_totals_tenant_id_division_id_divisions')),
    sa.ForeignKeyConstraint(['tenant_id', 'team_id'], ['teams.tenant_id', 'teams.id'], name=op.f('fk_team_totals_tenant_id_team_id_teams')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_team_totals_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_totals')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'team_id', name=op.f('uq_team_totals_tenant_id_challenge_id_team_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_team_totals_tenant_id_id'))
    )
    op.create_index('ix_team_totals_rank', 'team_totals', ['tenant_id', 'challenge_id', 'division_id', 'score'], unique=False)
    op.create_index(op.f('ix_team_totals_tenant_id'), 'team_totals', ['tenant_id'], unique=False)
    op.create_table('activity_results',
    sa.Column('activity_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('registration_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ruleset_version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('score', sa.BigInteger(), nullable=False),
    sa.Column('counted_distance_m', sa.BigInteger(), nullable=False),
    sa.Column('local_day', sa.Date(), nullable=False),
    sa.Column('counted_at', kindstride.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decision_comment', sa.Text(), nullable=True),
    sa.Column('appeal_message', sa.Text(), nullable=True),
    sa.Column('appeal_state', sa.String(length=10), nullable=True),
    sa.Column('evaluated_at', kindstride.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'activity_id'], ['activities.tenant_id', 'activities.id'], name=op.f('fk_activity_results_tenant_id_activity_id_activities')),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_activity_results_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'decided_by_id'], ['users.tenant_id', 'users.id'], name=op.f('fk_activity_results_tenant_id_decided_by_id_users')),
    sa.ForeignKeyConstraint(['tenant_id', 'registration_id'], ['registrations.tenant_id', 'registrations.id'], name=op.f('fk_activity_results_tenant_id_registration_id_registrations')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_activity_results_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_results')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'activity_id', name=op.f('uq_activity_results_tenant_id_challenge_id_activity_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_activity_results_tenant_id_id'))
    )
    op.create_index('ix_activity_results_queue', 'activity_results', ['tenant_id', 'challenge_id', 'status'], unique=False)
    op.create_index('ix_activity_results_registration', 'activity_results', ['tenant_id', 'registration_id'], unique=False)
    op.create_index(op.f('ix_activity_results_tenant_id'), 'activity_results', ['tenant_id'], unique=False)
    op.create_table('participant_totals',
    sa.Column('challenge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('registration_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bib', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('score', sa.BigInteger(), nullable=False),
    sa.Column('distance_m', sa.BigInteger(), nullable=False),
    sa.Column('activities', sa.Integer(), nullable=False),
    sa.Column('reached_at', kindstride.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'challenge_id'], ['challenges.tenant_id', 'challenges.id'], name=op.f('fk_participant_totals_tenant_id_challenge_id_challenges')),
    sa.ForeignKeyConstraint(['tenant_id', 'registration_id'], ['registrations.tenant_id', 'registrations.id'], name=op.f('fk_participant_totals_tenant_id_registration_id_registrations')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_participant_totals_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participant_totals')),
    sa.UniqueConstraint('tenant_id', 'challenge_id', 'registration_id', name=op.f('uq_participant_totals_tenant_id_challenge_id_registration_id')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_participant_totals_tenant_id_id'))
    )
    op.create_index('ix_participant_totals_rank', 'participant_totals', ['tenant_id', 'challenge_id', 'score'], unique=False)
    op.create_index('ix_participant_totals_team', 'participant_totals', ['tenant_id', 'team_id'], unique=False)
    op.create_index(op.f('ix_participant_totals_tenant_id'), 'participant_totals', ['tenant_id'], unique=False)

    for table in TENANT_TABLES:
        rls.apply(op, rls.enable_rls_statements(table))


def downgrade():
    op.drop_index(op.f('ix_participant_totals_tenant_id'), table_name='participant_totals')
    op.drop_index('ix_participant_totals_team', table_name='participant_totals')
    op.drop_index('ix_participant_totals_rank', table_name='participant_totals')
    op.drop_table('participant_totals')
    op.drop_index(op.f('ix_activity_results_tenant_id'), table_name='activity_results')
    op.drop_index('ix_activity_results_registration', table_name='activity_results')
    op.drop_index('ix_activity_results_queue', table_name='activity_results')
    op.drop_table('activity_results')
    op.drop_index(op.f('ix_team_totals_tenant_id'), table_name='team_totals')
    op.drop_index('ix_team_totals_rank', table_name='team_totals')
    op.drop_table('team_totals')
    op.drop_index(op.f('ix_registrations_tenant_id'), table_name='registrations')
    op.drop_index(op.f('ix_registrations_team_id'), table_name='registrations')
    op.drop_table('registrations')
    op.drop_index(op.f('ix_teams_tenant_id'), table_name='teams')
    op.drop_table('teams')
    op.drop_index(op.f('ix_ruleset_versions_tenant_id'), table_name='ruleset_versions')
    op.drop_table('ruleset_versions')
    op.drop_index(op.f('ix_divisions_tenant_id'), table_name='divisions')
    op.drop_table('divisions')
    op.drop_index(op.f('ix_audit_log_tenant_id'), table_name='audit_log')
    op.drop_index('ix_audit_log_subject', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index('ix_activities_user_start', table_name='activities')
    op.drop_index(op.f('ix_activities_tenant_id'), table_name='activities')
    op.drop_table('activities')
    op.drop_index(op.f('ix_challenges_tenant_id'), table_name='challenges')
    op.drop_table('challenges')
