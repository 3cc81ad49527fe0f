"""masterdata tables: assertions, golden records, rules, conflicts, decisions, candidates, findings

Revision ID: masterdata_0001
Revises:
Create Date: 2026-11-26 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'masterdata_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('masterdata',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('md_assertion',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('key', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=True),
    sa.Column('given_key', sa.Text(), nullable=True),
    sa.Column('department', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=False),
    sa.Column('source_record_id', sa.Text(), nullable=False),
    sa.Column('source_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.String(length=100).with_variant(sa.String(length=100, collation='C'), 'postgresql'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('attributes', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id', 'position', name='uq_md_assertion_message')
    )
    op.create_index('ix_md_assertion_key', 'md_assertion', ['key', 'kind'], unique=False)
    op.create_table('md_decision',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('key', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=False),
    sa.Column('attribute', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('department', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=True),
    sa.Column('seen', sa.Text(), nullable=False),
    sa.Column('conflict_id', sa.Integer(), nullable=True),
    sa.Column('decided_by', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_md_decision_key', 'md_decision', ['key', 'kind'], unique=False)
    op.create_table('md_entity',
    sa.Column('credit_code', sa.String(length=18).with_variant(sa.String(length=18, collation='C'), 'postgresql'), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('entity_type', sa.Text(), nullable=True),
    sa.Column('legal_representative', sa.Text(), nullable=True),
    sa.Column('registered_capital', sa.Text(), nullable=True),
    sa.Column('established_on', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=True),
    sa.Column('registration_authority', sa.Text(), nullable=True),
    sa.Column('division', sa.Text(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('business_scope', sa.Text(), nullable=True),
    sa.Column('tax_status', sa.Text(), nullable=True),
    sa.Column('organization_code', sa.Text(), nullable=True),
    sa.Column('rules_version', sa.String(length=32), nullable=False),
    sa.Column('sources', sa.Text(), nullable=False),
    sa.Column('deleted_by', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('credit_code')
    )
    op.create_index('ix_md_entity_division', 'md_entity', ['division'], unique=False)
    op.create_index('ix_md_entity_name', 'md_entity', ['name'], unique=False)
    op.create_table('md_person',
    sa.Column('id_number', sa.String(length=18).with_variant(sa.String(length=18, collation='C'), 'postgresql'), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('sex', sa.Text(), nullable=True),
    sa.Column('birth_date', sa.Text(), nullable=True),
    sa.Column('ethnicity', sa.Text(), nullable=True),
    sa.Column('division', sa.Text(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('phone', sa.Text(), nullable=True),
    sa.Column('marital_status', sa.Text(), nullable=True),
    sa.Column('social_insurance_status', sa.Text(), nullable=True),
    sa.Column('rules_version', sa.String(length=32), nullable=False),
    sa.Column('sources', sa.Text(), nullable=False),
    sa.Column('deleted_by', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id_number')
    )
    op.create_index('ix_md_person_division', 'md_person', ['division'], unique=False)
    op.create_index('ix_md_person_name', 'md_person', ['name'], unique=False)
    op.create_table('md_ruleset',
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('rules', sa.Text(), nullable=False),
    sa.Column('in_force', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_index('uq_md_ruleset_in_force', 'md_ruleset', ['in_force'], unique=True, postgresql_where=sa.text('in_force'), sqlite_where=sa.text('in_force'))
    op.create_table('md_candidate',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('assertion_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('department', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=False),
    sa.Column('reasons', sa.String(length=200), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('birth_date', sa.Text(), nullable=True),
    sa.Column('sex', sa.Text(), nullable=True),
    sa.Column('division', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assertion_id'], ['md_assertion.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('assertion_id')
    )
    op.create_index('ix_md_candidate_name', 'md_candidate', ['name'], unique=False)
    op.create_table('md_conflict',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('key', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=False),
    sa.Column('attribute', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolution', sa.String(length=20), nullable=True),
    sa.Column('resolved_value', sa.Text(), nullable=True),
    sa.Column('wrong_department', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=True),
    sa.Column('decision_id', sa.Integer(), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['decision_id'], ['md_decision.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_md_conflict_status', 'md_conflict', ['status', 'kind', 'attribute'], unique=False)
    op.create_index('uq_md_conflict_open', 'md_conflict', ['kind', 'key', 'attribute'], unique=True, postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))
    op.create_table('md_finding',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('assertion_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('department', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=False),
    sa.Column('key', sa.Text(), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('attribute', sa.String(length=40), nullable=True),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('expected', sa.Text(), nullable=True),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assertion_id'], ['md_assertion.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('assertion_id', 'code', name='uq_md_finding_code')
    )
    op.create_index('ix_md_finding_department', 'md_finding', ['department', 'kind', 'severity'], unique=False)
    op.create_table('md_conflict_value',
    sa.Column('conflict_id', sa.Integer(), nullable=False),
    sa.Column('department', sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql'), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('assertion_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['assertion_id'], ['md_assertion.id'], ),
    sa.ForeignKeyConstraint(['conflict_id'], ['md_conflict.id'], ),
    sa.PrimaryKeyConstraint('conflict_id', 'department')
    )
    op.create_index('ix_md_conflict_value_department', 'md_conflict_value', ['department'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_md_conflict_value_department', table_name='md_conflict_value')
    op.drop_table('md_conflict_value')
    op.drop_index('ix_md_finding_department', table_name='md_finding')
    op.drop_table('md_finding')
    op.drop_index('uq_md_conflict_open', table_name='md_conflict', postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))
    op.drop_index('ix_md_conflict_status', table_name='md_conflict')
    op.drop_table('md_conflict')
    op.drop_index('ix_md_candidate_name', table_name='md_candidate')
    op.drop_table('md_candidate')
    op.drop_index('uq_md_ruleset_in_force', table_name='md_ruleset', postgresql_where=sa.text('in_force'), sqlite_where=sa.text('in_force'))
    op.drop_table('md_ruleset')
    op.drop_index('ix_md_person_name', table_name='md_person')
    op.drop_index('ix_md_person_division', table_name='md_person')
    op.drop_table('md_person')
    op.drop_index('ix_md_entity_name', table_name='md_entity')
    op.drop_index('ix_md_entity_division', table_name='md_entity')
    op.drop_table('md_entity')
    op.drop_index('ix_md_decision_key', table_name='md_decision')
    op.drop_table('md_decision')
    op.drop_index('ix_md_assertion_key', table_name='md_assertion')
    op.drop_table('md_assertion')
