"""The Flask app factory: `flask --app app …` or `create_app(config_path)`."""
from __future__ import annotations

import atexit
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

import rules.photo
from bot import webhook
from bot.client import WeChatApi
from bot.conversation import Conversation
from bot.outbound import Outbound
from bot.protocol import WeChatProtocol
from bot.retries import RetryGuard
from handlers.base import Services
from payments import sandbox
from rules.identity import mask_personal_data
from settings import Settings, load_settings
from store.db import Database
from store.files import PhotoFiles


@dataclass
class Collector:
    """Everything one app instance shares across requests."""
    settings: Settings
    db: Database
    protocol: WeChatProtocol
    retries: RetryGuard
    conversation: Conversation
    outbound: Outbound
    services: Services
    payments: sandbox.SandboxGateway


def create_app(config_path: str | os.PathLike | None = None) -> Flask:
    settings = load_settings(config_path)
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(SETTINGS=settings, SECRET_KEY=settings.secret_key, PHOTO_THRESHOLDS=settings.photo,
                      MAX_CONTENT_LENGTH=settings.wechat.max_body_bytes)
    app.extensions["collector"] = build_collector(settings)
    app.register_blueprint(webhook.blueprint)
    app.register_blueprint(sandbox.blueprint)
    app.add_url_rule("/healthz", "healthz", lambda: {"status": "ok"})
    register_commands(app)
    # Served apps load the face models before the first photo arrives; CLI commands never do.
    app.before_request(warm_up_photo_models)
    return app


_warm_up_thread: threading.Thread | None = None


def warm_up_photo_models() -> None:
    """Loads the face models in the background so the first photo is answered as fast as the rest.
    Once per process; joined at exit, since killing mediapipe mid-load aborts the interpreter."""
    global _warm_up_thread
    if _warm_up_thread is None:
        _warm_up_thread = threading.Thread(target=rules.photo.warm_up, name="photo-warm-up", daemon=True)
        _warm_up_thread.start()
        atexit.register(_warm_up_thread.join, 60)


def build_collector(settings: Settings) -> Collector:
    db = Database(settings.database_url)
    wechat = WeChatApi(settings.wechat)
    payments = build_payment_gateway(settings)
    photo_workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="photo")
    services = Services(
        photo_files=PhotoFiles(settings.photo_dir), wechat=wechat, payments=payments,
        check_photo=partial(rules.photo.check, thresholds=settings.photo), submit=photo_workers.submit,
    )
    outbound = Outbound(db, wechat)
    return Collector(
        settings=settings, db=db, protocol=WeChatProtocol(settings.wechat), retries=RetryGuard(db),
        conversation=Conversation(db, settings, services, outbound), outbound=outbound, services=services,
        payments=payments,
    )


def build_payment_gateway(settings: Settings) -> sandbox.SandboxGateway:
    if settings.payment.gateway != "sandbox":
        raise ValueError(f"unknown payment gateway: {settings.payment.gateway}")
    return sandbox.SandboxGateway(settings.payment.public_base_url, settings.secret_key)


def register_commands(app: Flask) -> None:
    from bot.chat import chat_command
    from staff.cli import register
    from staff.photo import photo_group

    register(app)
    app.cli.add_command(photo_group)
    app.cli.add_command(chat_command)
    app.cli.add_command(serve_command)


@click.command("serve")
@with_appcontext
def serve_command() -> None:
    """Serve the app with waitress on the host, port and threads from config."""
    import waitress

    server = current_app.config["SETTINGS"].server
    click.echo(f"Serving on http://{server.host}:{server.port}/wechat ({server.threads} threads)")
    waitress.serve(current_app._get_current_object(), host=server.host, port=server.port, threads=server.threads)


class MaskPersonalData(logging.Filter):
    """ID and phone numbers never reach a log line in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_personal_data(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_personal_data(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, MaskPersonalData) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(MaskPersonalData())
        root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
