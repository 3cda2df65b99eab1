"""HL7 interface: appointment ids and visit number as sent, provider name parts, phone number parts,
and an index on undelivered outbox rows per patient for the dispatcher's claim.

New columns default to the empty string, so rows written before this revision
read as "not sent": their ADT falls back to our own visit number and to the
whole provider name, exactly as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 11:46:52.380518
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_family', sa.String(length=128), server_default='', nullable=False))
        batch_op.add_column(sa.Column('provider_given', sa.String(length=128), server_default='', nullable=False))
        batch_op.add_column(sa.Column('provider_authority', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('placer_id', sa.String(length=128), server_default='', nullable=False))
        batch_op.add_column(sa.Column('placer_authority', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('filler_id', sa.String(length=128), server_default='', nullable=False))
        batch_op.add_column(sa.Column('filler_authority', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('visit_number', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('visit_authority', sa.String(length=64), server_default='', nullable=False))

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_message_undelivered_key', ['ordering_key', 'id'], unique=False,
                              postgresql_where=sa.text("status IN ('pending', 'sending', 'dead')"),
                              sqlite_where=sa.text("status IN ('pending', 'sending', 'dead')"))

    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_country_code', sa.String(length=8), server_default='', nullable=False))
        batch_op.add_column(sa.Column('phone_area_code', sa.String(length=8), server_default='', nullable=False))
        batch_op.add_column(sa.Column('phone_local_number', sa.String(length=16), server_default='', nullable=False))
        batch_op.add_column(sa.Column('phone_extension', sa.String(length=16), server_default='', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('phone_extension')
        batch_op.drop_column('phone_local_number')
        batch_op.drop_column('phone_area_code')
        batch_op.drop_column('phone_country_code')

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_message_undelivered_key')

    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.drop_column('visit_authority')
        batch_op.drop_column('visit_number')
        batch_op.drop_column('filler_authority')
        batch_op.drop_column('filler_id')
        batch_op.drop_column('placer_authority')
        batch_op.drop_column('placer_id')
        batch_op.drop_column('provider_authority')
        batch_op.drop_column('provider_given')
        batch_op.drop_column('provider_family')

