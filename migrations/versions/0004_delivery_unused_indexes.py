"""delivery: drop the installation and repository indexes, which no query uses

Every delivery INSERT maintains each index of the table; nothing filters deliveries by installation
or repository (the inbox API filters by state and event, the sweeper by state, retention by time).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 02:30:00
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_installation_id'))
        batch_op.drop_index(batch_op.f('ix_delivery_repository'))


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_repository'), ['repository'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_installation_id'), ['installation_id'], unique=False)
