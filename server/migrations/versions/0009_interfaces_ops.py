"""Interfaces in operation: count the receiver's own rejections of an outbox message apart from its attempts,
and a device's readings and unrecognised observations apart from its frames.

Only rejections (AR/CE) count toward a dead letter; transport failures are
retried for as long as an outage lasts. Rows written before this revision
start with no rejections counted.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rejections', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('readings', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('unrecognised', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_column('unrecognised')
        batch_op.drop_column('readings')
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_column('rejections')
