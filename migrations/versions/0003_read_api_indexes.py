"""read api indexes: keyset pages by environment, repository and service; DORA periods; commits by sha

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:29:20.262432
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('decision', schema=None) as batch_op:
        batch_op.create_index('ix_decision_sha', ['sha'], unique=False)

    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_deployed', ['deployed_at'], unique=False)
        batch_op.create_index('ix_deployment_env_deployed', ['environment', 'deployed_at'], unique=False)
        batch_op.create_index('ix_deployment_env_id', ['environment', 'id'], unique=False)
        batch_op.create_index('ix_deployment_repo_env_deployed', ['repository', 'environment', 'deployed_at'], unique=False)
        batch_op.create_index('ix_deployment_repo_env_id', ['repository', 'environment', 'id'], unique=False)
        batch_op.create_index('ix_deployment_repo_id', ['repository', 'id'], unique=False)
        batch_op.create_index('ix_deployment_sha', ['sha'], unique=False)
        batch_op.create_index('ix_deployment_svc_env_deployed', ['service', 'environment', 'deployed_at'], unique=False)
        batch_op.create_index('ix_deployment_svc_id', ['service', 'id'], unique=False)

    with op.batch_alter_table('deployment_status', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_status_state_created', ['state', 'created_at', 'deployment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deployment_status', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_status_state_created')

    with op.batch_alter_table('deployment', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_svc_id')
        batch_op.drop_index('ix_deployment_svc_env_deployed')
        batch_op.drop_index('ix_deployment_sha')
        batch_op.drop_index('ix_deployment_repo_id')
        batch_op.drop_index('ix_deployment_repo_env_id')
        batch_op.drop_index('ix_deployment_repo_env_deployed')
        batch_op.drop_index('ix_deployment_env_id')
        batch_op.drop_index('ix_deployment_env_deployed')
        batch_op.drop_index('ix_deployment_deployed')

    with op.batch_alter_table('decision', schema=None) as batch_op:
        batch_op.drop_index('ix_decision_sha')

