"""catalog tables

Revision ID: catalog_0001
Revises: 
Create Date: 2026-11-26 08:12:21.489765
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'catalog_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('catalog',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('catalog_domain',
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('parent', sa.String(length=12), nullable=True),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('catalog_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('listing_version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('catalog_department',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('domain', sa.String(length=12), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('outbound', sa.String(length=64), nullable=False),
    sa.Column('outbound_settings', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['domain'], ['catalog_domain.code'], ),
    sa.ForeignKeyConstraint(['parent_id'], ['catalog_department.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain', 'code', name='uq_catalog_department_code')
    )
    op.create_table('catalog_theme',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('domain', sa.String(length=12), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['domain'], ['catalog_domain.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain', 'code', name='uq_catalog_theme_code')
    )
    op.create_table('catalog_directory',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('domain', sa.String(length=12), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['catalog_department.id'], ),
    sa.ForeignKeyConstraint(['domain'], ['catalog_domain.code'], ),
    sa.ForeignKeyConstraint(['parent_id'], ['catalog_directory.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('catalog_user',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['catalog_department.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('catalog_resource',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('domain', sa.String(length=12), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('directory_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('published_revision', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['directory_id'], ['catalog_directory.id'], ),
    sa.ForeignKeyConstraint(['domain'], ['catalog_domain.code'], ),
    sa.ForeignKeyConstraint(['provider_id'], ['catalog_department.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain', 'code', name='uq_catalog_resource_code')
    )
    op.create_table('catalog_application',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('consumer_id', sa.Integer(), nullable=False),
    sa.Column('items', sa.Text(), nullable=True),
    sa.Column('filter', sa.Text(), nullable=True),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline', sa.Date(), nullable=True),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['consumer_id'], ['catalog_department.id'], ),
    sa.ForeignKeyConstraint(['resource_id'], ['catalog_resource.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('catalog_resource_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=32), nullable=True),
    sa.Column('to_status', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['resource_id'], ['catalog_resource.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('catalog_resource_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_resource_event_resource_id'), ['resource_id'], unique=False)

    op.create_table('catalog_revision',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('classification', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('abstract', sa.Text(), nullable=False),
    sa.Column('format', sa.String(length=64), nullable=False),
    sa.Column('sharing_type', sa.String(length=16), nullable=False),
    sa.Column('sharing_conditions', sa.Text(), nullable=False),
    sa.Column('sharing_mode', sa.String(length=32), nullable=False),
    sa.Column('open_type', sa.String(length=16), nullable=False),
    sa.Column('open_conditions', sa.Text(), nullable=False),
    sa.Column('update_cycle', sa.String(length=16), nullable=False),
    sa.Column('publish_date', sa.Date(), nullable=True),
    sa.Column('related_codes', sa.Text(), nullable=False),
    sa.Column('themes', sa.Text(), nullable=False),
    sa.Column('specification', sa.String(length=64), nullable=True),
    sa.Column('specification_version', sa.String(length=16), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['resource_id'], ['catalog_resource.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('resource_id', 'number', name='uq_catalog_revision_number')
    )
    op.create_table('catalog_subscription',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('items', sa.Text(), nullable=True),
    sa.Column('filter', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['resource_id'], ['catalog_resource.id'], ),
    sa.ForeignKeyConstraint(['subscriber_id'], ['catalog_department.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('catalog_subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_subscription_resource_id'), ['resource_id'], unique=False)

    op.create_table('catalog_application_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=32), nullable=True),
    sa.Column('to_status', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['catalog_application.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('catalog_application_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_application_event_application_id'), ['application_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('catalog_application_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_application_event_application_id'))

    op.drop_table('catalog_application_event')
    with op.batch_alter_table('catalog_subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_subscription_resource_id'))

    op.drop_table('catalog_subscription')
    op.drop_table('catalog_revision')
    with op.batch_alter_table('catalog_resource_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_resource_event_resource_id'))

    op.drop_table('catalog_resource_event')
    op.drop_table('catalog_application')
    op.drop_table('catalog_resource')
    op.drop_table('catalog_user')
    op.drop_table('catalog_directory')
    op.drop_table('catalog_theme')
    op.drop_table('catalog_department')
    op.drop_table('catalog_state')
    op.drop_table('catalog_domain')
