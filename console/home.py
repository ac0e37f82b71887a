"""/staff/: each role's way to its work."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, render_template
from flask_login import current_user

from console import PREFIX
from console.auth import requires

blueprint = Blueprint("console_home", __name__, url_prefix=PREFIX)


@dataclass(frozen=True)
class Section:
    """A console page as the nav and the home page list it; `roles` may open it (admin opens all)."""
    path: str
    title: str
    summary: str
    roles: tuple[str, ...]


# Paths rather than endpoints: some of these pages are built by other modules, registered or not yet.
SECTIONS = (
    Section(f"{PREFIX}/review", "审核", "按截止时间审核照片，通过或退回。", ("reviewer",)),
    Section(f"{PREFIX}/support", "客服", "处理请求人工帮助的考生对话。", ("support",)),
    Section(f"{PREFIX}/roster", "名单", "上传毕业生名单，查看导入结果。", ("admin",)),
    Section(f"{PREFIX}/handover", "报送", "打包已通过的照片，报送市自考办。", ("admin",)),
    Section(f"{PREFIX}/overview", "概况", "采集进度、审核时效和审核员统计。", ("admin",)),
    Section(f"{PREFIX}/reminders", "提醒", "向未完成采集的考生发送提醒，查看送达进度。", ("admin",)),
    Section(f"{PREFIX}/audit", "审计日志", "谁在何时做了什么，可筛选、导出。", ("admin",)),
    Section(f"{PREFIX}/users", "账号", "添加、停用员工账号。", ("admin",)),
)


def sections_for(user) -> list[Section]:
    return [section for section in SECTIONS if user.may(*section.roles)]


@blueprint.app_context_processor
def navigation():
    """base.html's nav: only what the signed-in role may open."""
    if current_user and current_user.is_authenticated:
        return {"nav_sections": sections_for(current_user)}
    return {"nav_sections": []}


@blueprint.get("/")
@requires()
def home():
    return render_template("console/home.html", sections=sections_for(current_user))
