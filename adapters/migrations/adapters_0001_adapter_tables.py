"""adapter tables

Revision ID: adapters_0001
Revises:
Create Date: 2026-11-26 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'adapters_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('adapters',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('adapter_watermark',
    sa.Column('adapter', sa.String(length=100), nullable=False),
    sa.Column('department', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('adapter')
    )
    op.create_table('gateway_credential',
    sa.Column('department', sa.String(length=32), nullable=False),
    sa.Column('sealed_secret', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('department')
    )
    op.create_table('gateway_nonce',
    sa.Column('department', sa.String(length=32), nullable=False),
    sa.Column('nonce', sa.String(length=100), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('department', 'nonce')
    )
    op.create_index('ix_gateway_nonce_seen_at', 'gateway_nonce', ['seen_at'])
    op.create_table('gateway_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('remote', sa.String(length=64), nullable=True),
    sa.Column('operation', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('gateway_audit')
    op.drop_index('ix_gateway_nonce_seen_at', table_name='gateway_nonce')
    op.drop_table('gateway_nonce')
    op.drop_table('gateway_credential')
    op.drop_table('adapter_watermark')
