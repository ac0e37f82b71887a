"""Review claims, reject reasons, overrides and second reviews (issue 9)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The notice's photo rules, as preset reasons (admins edit them in the console): code, label, the
# sentence the candidate receives.
DEFAULT_REASONS = [
    ("background", "背景不符合要求", "背景不符合要求：请在白色或浅蓝色纯色背景前拍摄，背景不要有阴影和杂物。"),
    ("head_size", "头部比例不符合要求", "头部比例不符合要求：请拍正面免冠半身照，头顶到下巴约占照片高度的三分之二，头部居中。"),
    ("clothing", "着装不符合要求", "着装不符合要求：请穿有领的深色上衣，不要穿白色或浅色上衣，不要穿制服。"),
    ("blurry", "照片模糊", "照片模糊：请在光线充足处重新拍摄，保持手机稳定、对焦清晰。"),
    ("accessories", "佩戴饰品/眼镜反光", "佩戴饰品或眼镜反光：请摘下帽子、耳环等饰品；戴眼镜时请避免镜片反光，或摘下眼镜拍摄。"),
    ("not_recent", "非本人近期照片", "不是本人近期照片：请上传本人近六个月内的正面照片。"),
    ("expression", "表情或姿势不端正", "表情或姿势不端正：请正对镜头，双眼自然睁开，嘴巴闭合，不要歪头。"),
    ("edited", "照片经过修饰", "照片经过美颜、滤镜或修图：请上传未经修饰的原始照片。"),
]


def upgrade() -> None:
    op.create_table('reject_reasons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('review_claims',
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.String(length=8), nullable=False),
    sa.Column('reviewer', sa.String(length=64), nullable=False),
    sa.Column('claimed_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], ),
    sa.PrimaryKeyConstraint('photo_id', 'round')
    )
    op.create_table('review_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.String(length=8), nullable=False),
    sa.Column('reviewer', sa.String(length=64), nullable=False),
    sa.Column('verdict', sa.String(length=8), nullable=False),
    sa.Column('reason_code', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('overridden_rules', sa.JSON(), nullable=True),
    sa.Column('claimed_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('decided_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('undo_until', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('undone_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('review_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_review_decisions_photo_round', ['photo_id', 'round'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_decisions_reviewer'), ['reviewer'], unique=False)

    op.create_table('second_reviews',
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('first_decision_id', sa.Integer(), nullable=False),
    sa.Column('second_decision_id', sa.Integer(), nullable=True),
    sa.Column('created_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['first_decision_id'], ['review_decisions.id'], ),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], ),
    sa.ForeignKeyConstraint(['second_decision_id'], ['review_decisions.id'], ),
    sa.PrimaryKeyConstraint('photo_id')
    )
    op.create_table('forced_reviews',
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('sent_by', sa.String(length=64), nullable=False),
    sa.Column('why', sa.Text(), nullable=False),
    sa.Column('created_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], ),
    sa.PrimaryKeyConstraint('photo_id')
    )
    _seed_reasons()


def _seed_reasons() -> None:
    table = sa.table('reject_reasons', sa.column('code', sa.String), sa.column('label', sa.String),
                     sa.column('text', sa.Text), sa.column('position', sa.Integer),
                     sa.column('active', sa.Boolean), sa.column('updated_at', store.models.UtcDateTime()))
    now = store.models.utcnow()
    op.bulk_insert(table, [{"code": code, "label": label, "text": text, "position": i, "active": True,
                            "updated_at": now} for i, (code, label, text) in enumerate(DEFAULT_REASONS, start=1)])


def downgrade() -> None:
    op.drop_table('forced_reviews')
    op.drop_table('second_reviews')
    with op.batch_alter_table('review_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_decisions_reviewer'))
        batch_op.drop_index('ix_review_decisions_photo_round')

    op.drop_table('review_decisions')
    op.drop_table('review_claims')
    op.drop_table('reject_reasons')
