"""bus tables

Revision ID: bus_0001
Revises: 
Create Date: 2026-11-26 08:12:15.326961
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'bus_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('bus',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dead_letter',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dead_letter_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('sender', sa.String(length=32), nullable=True),
    sa.Column('resource', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('reason_text', sa.Text(), nullable=False),
    sa.Column('rule', sa.String(length=128), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('column', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=True),
    sa.Column('queue', sa.String(length=200), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('origin_exchange', sa.String(length=200), nullable=False),
    sa.Column('origin_routing_key', sa.String(length=255), nullable=False),
    sa.Column('first_failure', sa.String(length=40), nullable=True),
    sa.Column('last_failure', sa.String(length=40), nullable=True),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dead_letter_id')
    )
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letter_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_reason'), ['reason'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_status'), ['status'], unique=False)

    op.create_table('inbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('department', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('sender', sa.String(length=32), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('operation', sa.String(length=16), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('department', 'message_id', name='uq_inbox_department_message')
    )
    op.create_table('message_claim',
    sa.Column('scope', sa.String(length=200), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'message_id')
    )
    with op.batch_alter_table('message_claim', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_claim_claimed_at'), ['claimed_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('message_claim', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_claim_claimed_at'))

    op.drop_table('message_claim')
    op.drop_table('inbox')
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letter_status'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_reason'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_message_id'))

    op.drop_table('dead_letter')
