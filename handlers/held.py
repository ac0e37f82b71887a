"""A message to a conversation a support agent holds: stored as always, answered by nobody but the
agent. A photo's bytes are fetched now and kept for the agent's page (WeChat keeps media 3 days)."""
from __future__ import annotations

import logging

from handlers.base import NO_REPLY, Context, Incoming, Outcome

log = logging.getLogger(__name__)


def keep(ctx: Context, msg: Incoming) -> Outcome:
    outcome = Outcome(NO_REPLY, ctx.candidate.state, checks={"agent": ctx.candidate.agent})
    if msg.kind != "image" or not msg.media_id:
        return outcome
    ctx.release()  # no row lock held while downloading
    try:
        data = ctx.services.wechat.download_media(msg.media_id)
    except Exception as exc:  # noqa: BLE001 - the message is stored either way; the agent sees the media id
        log.warning("photo %s for an agent could not be downloaded: %s", msg.media_id, exc)
        outcome.checks["download"] = "failed"
    else:
        if len(data) <= ctx.settings.photo.max_file_bytes:
            outcome.media_path = ctx.services.photo_files.put(data).relative_path
    ctx.reload()
    return outcome
