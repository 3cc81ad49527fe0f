"""inbox: fetch leases, for departments that pull their deliveries (SOAP Fetch and Ack)

Revision ID: bus_0002
Revises: bus_0001
Create Date: 2026-11-26 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'bus_0002'
down_revision: str | Sequence[str] | None = 'bus_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('inbox') as batch:
        batch.add_column(sa.Column('visible_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('fetches', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_inbox_waiting', 'inbox', ['department', 'acked_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_inbox_waiting', table_name='inbox')
    with op.batch_alter_table('inbox') as batch:
        batch.drop_column('acked_at')
        batch.drop_column('fetches')
        batch.drop_column('visible_at')
