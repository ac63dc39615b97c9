"""gitops candidates and repository configuration

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:39:08.290213
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('candidate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('repository', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
    sa.Column('environment', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('sha', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('required_checks', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('ordinal', sa.Float(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('not_before', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('environment_url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
    sa.Column('pr_number', sa.Integer(), nullable=True),
    sa.Column('production', sa.Boolean(), nullable=False),
    sa.Column('installation_id', sa.BigInteger(), autoincrement=False, nullable=True),
    sa.Column('delivery_guid', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('deployment_id', sa.Integer(), nullable=True),
    sa.Column('last_commit_status', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('extra', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_candidate')),
    sa.UniqueConstraint('key', name=op.f('uq_candidate_key'))
    )
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.create_index('ix_candidate_repo_env_state', ['repository', 'environment', 'state'], unique=False)
        batch_op.create_index('ix_candidate_repo_sha_state', ['repository', 'sha', 'state'], unique=False)

    op.create_table('repo_config',
    sa.Column('repository', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('good_text', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('fetched_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('repository', name=op.f('pk_repo_config'))
    )


def downgrade() -> None:
    op.drop_table('repo_config')
    with op.batch_alter_table('candidate', schema=None) as batch_op:
        batch_op.drop_index('ix_candidate_repo_sha_state')
        batch_op.drop_index('ix_candidate_repo_env_state')

    op.drop_table('candidate')
