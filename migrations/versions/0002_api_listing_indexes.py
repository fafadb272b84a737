"""indexes for newest-first image pages and technical aliases at scale

Revision ID: 0002_api
Revises: 0001
Create Date: 2026-11-23 20:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002_api'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index(
            'ix_images_project_created', ['project_id', 'created_at', 'id'], unique=False
        )
        batch_op.create_index(
            'ix_images_project_source_created',
            ['project_id', 'source', 'created_at', 'id'],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_project_source_created')
        batch_op.drop_index('ix_images_project_created')
