"""schemas tables

Revision ID: schemas_0001
Revises: 
Create Date: 2026-11-26 08:12:21.443259
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'schemas_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('schemas',)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('deprecated_use',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=32), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', 'version', 'sender')
    )
    op.create_table('specification_file',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'version', 'filename')
    )
    op.create_table('specification_version',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('mode', sa.String(length=32), nullable=False),
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('main_file', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_by', sa.String(length=64), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deprecated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', 'version')
    )


def downgrade() -> None:
    op.drop_table('specification_version')
    op.drop_table('specification_file')
    op.drop_table('deprecated_use')
