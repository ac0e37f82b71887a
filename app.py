"""The Flask app factory: `flask --app app …` or `create_app(config_path)`."""
from __future__ import annotations

import atexit
import gc
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import click
from flask import Blueprint, Flask, current_app
from flask.cli import with_appcontext

import health
import rules.photo
from bot import webhook
from bot.access_token import build_token_store
from bot.client import WeChatApi
from bot.conversation import Conversation
from bot.protocol import WeChatProtocol
from bot.replay import build_nonce_store
from bot.retries import RetryGuard
from console import register_console
from handlers.base import PaymentGateway, Services
from jobs.queue import Jobs, build_jobs
from pacing import at_most
from notify.outbox import Outbox
from notify.wechat import WeChatChannel
from payments import sandbox
from rules.credentials import remember_secrets, scrub_credentials
from rules.identity import mask_personal_data
from settings import ConfigError, Settings, load_settings
from store.crypto import KeyRing
from store.db import Database
from store.files import PhotoFiles, secure_data_dir


@dataclass
class Collector:
    """Everything one app instance shares across requests."""
    settings: Settings
    db: Database
    protocol: WeChatProtocol
    retries: RetryGuard
    conversation: Conversation
    outbox: Outbox
    jobs: Jobs
    services: Services
    payments: PaymentGateway


def create_app(config_path: str | os.PathLike | None = None) -> Flask:
    settings = load_settings(config_path)
    configure_logging(settings.log_level)
    remember_secrets(settings.secret_key, settings.wechat.secret, settings.wechat.token,
                     settings.wechat.encoding_aes_key, settings.wechatpay.apiv3_key, settings.sms.secret_key)
    app = Flask(__name__)
    app.config.update(SETTINGS=settings, SECRET_KEY=settings.secret_key, PHOTO_THRESHOLDS=settings.photo,
                      MAX_CONTENT_LENGTH=settings.wechat.max_body_bytes)
    app.extensions["collector"] = build_collector(settings)
    app.register_blueprint(webhook.blueprint)
    app.register_blueprint(payment_blueprint(settings))
    health.register(app)
    register_console(app)
    register_commands(app)
    # Served apps load the face models before the first photo arrives; CLI commands never do.
    guards = [warm_up_photo_models] + ([refuse_to_serve] if weak_secret_key(settings) else [])
    for guard in guards:
        app.before_request(guard)
    webhook.mount(app, guards)  # POST /wechat ahead of Flask's request handling
    if settings.server.trusted_proxies:  # outermost: the webhook sees the client's address too
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


# The example config's placeholder: it signs payment links and staff sessions, so with it anyone can
# forge both. `make run` writes a random one into its config.toml.
DEFAULT_SECRET_KEYS = ("", "change-me")
WEAK_SECRET_KEY = ("secret_key 仍是示例中的占位值或为空，拒绝服务。请在配置文件中设为一个长随机字符串，例如："
                   "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'（make run 会自动生成）。")


def weak_secret_key(settings: Settings) -> bool:
    return settings.secret_key.strip() in DEFAULT_SECRET_KEYS


def refuse_to_serve():
    """Every request, when the app was created for a WSGI server with the placeholder secret_key (CLI
    commands other than `serve` still work, so that the key can be set and the database kept)."""
    logging.getLogger(__name__).error("refusing a request: %s", WEAK_SECRET_KEY)
    return WEAK_SECRET_KEY, 503, {"Content-Type": "text/plain; charset=utf-8"}


_warm_up_thread: threading.Thread | None = None


def warm_up_photo_models() -> None:
    """Loads the face models in the background so the first photo is answered as fast as the rest.
    Once per process; joined at exit, since killing mediapipe mid-load aborts the interpreter."""
    global _warm_up_thread
    if _warm_up_thread is None:
        _warm_up_thread = threading.Thread(target=_warm_up_then_freeze, name="photo-warm-up", daemon=True)
        _warm_up_thread.start()
        atexit.register(_warm_up_thread.join, 60)


def _warm_up_then_freeze() -> None:
    rules.photo.warm_up()
    # What a served process has built by now (the app, its libraries, the face models: some 200 000
    # objects) lives as long as the process. Out of the collector's reach, a full collection no longer
    # walks all of it on a request's time: it took 127-161 ms, about 0.05 ms a message on average.
    gc.freeze()
    # A message leaves a few hundred container objects behind, nearly all freed by reference counting:
    # collecting the young generation every 10 000 instead of every 700 cut 1 % of a message's
    # instructions (bench/instructions_bench.py).
    gc.set_threshold(10_000, 10, 10)


def check_photo(data: bytes, thresholds):
    """rules.photo.check, imported on the first photo: OpenCV and mediapipe stay out of CLI commands."""
    return rules.photo.check(data, thresholds)


def build_collector(settings: Settings) -> Collector:
    secure_data_dir(settings)  # before SQLite or huey create a file in it
    keys = KeyRing.from_settings(settings.privacy)  # one ring: the encrypted columns and the photo files
    db = Database(settings.database_url, ring=keys)
    redis = health.RedisLink(settings) if settings.redis_url else None  # one client and outage for all
    wechat = WeChatApi(settings.wechat, build_token_store(settings, db, redis))
    payments = build_payment_gateway(settings)
    # Downloads wait on the network; the checks themselves (memory, CPU) run at most N at a time.
    photo_workers = ThreadPoolExecutor(max_workers=settings.server.photo_checks_at_once + 2, thread_name_prefix="photo")
    services = Services(
        photo_files=PhotoFiles(settings.photo_dir, keys), wechat=wechat, payments=payments,
        check_photo=at_most(settings.server.photo_checks_at_once, partial(check_photo, thresholds=settings.photo)),
        submit=photo_workers.submit,
    )
    outbox = build_outbox(settings, db, wechat, redis)
    collector = Collector(
        settings=settings, db=db, protocol=WeChatProtocol(settings.wechat, nonces=build_nonce_store(settings, db, redis)),
        retries=RetryGuard(db, settings.wechat.claim_lease_seconds, settings.wechat.answer_within_seconds),
        conversation=Conversation(db, settings, services, outbox), outbox=outbox, jobs=build_jobs(settings, redis),
        services=services, payments=payments,
    )
    register_jobs(collector)
    return collector


def build_outbox(settings: Settings, db: Database, wechat: WeChatApi, redis: health.RedisLink | None) -> Outbox:
    from notify.sms import SmsChannel, build_sms_provider

    sms = build_sms_provider(settings)
    channels = {
        "wechat": WeChatChannel(db, wechat, settings.notifications),
        "sms": SmsChannel(sms),
    }
    channels["reminder"] = build_reminder_channel(settings, db, channels["wechat"], sms, redis)
    return Outbox(db, settings, channels)


def build_reminder_channel(settings: Settings, db: Database, wechat: WeChatChannel, sms,
                           redis: health.RedisLink | None):
    from notify.reminder_channel import ReminderChannel
    from notify.throttle import Throttle

    throttle = Throttle(db, redis.client if redis else None, settings.reminders.throttle_prefix)
    return ReminderChannel(db, settings, wechat, sms, throttle)


def register_jobs(collector: Collector) -> None:
    """Every background task and periodic job, in one place. Deliveries are queued once the event's
    transaction commits; the periodic outbox sweep catches whatever a crash or a full queue left."""
    from jobs import periodic

    jobs, outbox, every = collector.jobs, collector.outbox, collector.settings.jobs
    jobs.task("deliver", outbox.deliver)
    outbox.enqueue = partial(jobs.enqueue, "deliver")
    jobs.every("outbox", every.sweep_every_minutes, outbox.sweep, "deliver notifications that are due or stuck")
    jobs.every("deferred", every.sweep_every_minutes,
               partial(collector.conversation.resume_lost_work, timedelta(minutes=every.lost_work_after_minutes)),
               "redo slow photo checks whose process died before answering")
    jobs.every("reviews", every.reviews_every_minutes, partial(periodic.review_deadlines, collector),
               "apologise for reviews past the promised time, warn about those close to it")
    periodic.register_payment_jobs(collector)
    register_handover_jobs(collector)
    register_support_jobs(collector)
    from staff.reminders import register_jobs as register_reminder_jobs

    register_reminder_jobs(collector)
    register_retention_job(collector)


def register_retention_job(collector: Collector) -> None:
    """Personal data past its [retention] days is deleted or anonymised (staff/privacy.py)."""
    from staff import privacy

    collector.jobs.every("retention", collector.settings.retention.every_minutes,
                         partial(privacy.run_retention, collector.db, collector.settings, collector.services.photo_files),
                         "delete photos, transcripts and payers' personal fields past their retention")


def register_support_jobs(collector: Collector) -> None:
    """Conversations an agent took over and left idle go back to the bot."""
    from staff import support

    def hand_back_idle() -> dict[str, int]:
        with collector.db.session() as session:
            return {"handed_back": len(support.hand_back_idle(session, collector.outbox, collector.settings))}

    collector.jobs.every("support", collector.settings.jobs.sweep_every_minutes, hand_back_idle,
                         "hand conversations an agent left idle back to the bot")


def register_handover_jobs(collector: Collector) -> None:
    """The console queues a claimed hand-over batch; the periodic job finishes batches nobody is writing."""
    from staff import handover

    db, settings = collector.db, collector.settings
    collector.jobs.task("handover", partial(handover.run_job, db, settings))
    collector.jobs.every("handover", settings.jobs.sweep_every_minutes, partial(handover.resume_stuck, db, settings),
                         "finish hand-over batches whose build never started or whose worker died")


def build_payment_gateway(settings: Settings) -> PaymentGateway:
    """[payment] gateway: "sandbox" (the default) or "wechatpay" (ConfigError if [wechatpay] is incomplete)."""
    if settings.payment.gateway == "sandbox":
        return sandbox.SandboxGateway(settings.payment.public_base_url, settings.secret_key)
    if settings.payment.gateway == "wechatpay":
        from payments.wechatpay import WeChatPayGateway

        return WeChatPayGateway(settings)
    raise ConfigError(f'payment.gateway must be "sandbox" or "wechatpay", not {settings.payment.gateway!r}')


def payment_blueprint(settings: Settings) -> Blueprint:
    """Only the configured gateway's pages are served: a sandbox page must never confirm a real order."""
    if settings.payment.gateway == "wechatpay":
        from payments import wechatpay_views

        return wechatpay_views.blueprint
    return sandbox.blueprint


def register_commands(app: Flask) -> None:
    from jobs.cli import jobs_group, outbox_group
    from staff.cli import register
    from staff.photo import photo_group

    register(app)
    app.cli.add_command(jobs_group)
    app.cli.add_command(outbox_group)
    app.cli.add_command(photo_group)
    app.cli.add_command(serve_command)
    from staff.reminders_cli import remind_group

    app.cli.add_command(remind_group)
    from staff.privacy_cli import erase_command, keys_group, retention_group

    for command in (keys_group, retention_group, erase_command):
        app.cli.add_command(command)


@click.command("serve")
@click.option("--prod", is_flag=True, help="gunicorn with [server] workers and worker_class, whatever [server] engine says")
@with_appcontext
def serve_command(prod: bool) -> None:
    """Serve the app: waitress (host, port, threads) or gunicorn ([server] engine, or --prod)."""
    from bot import arrival

    settings = current_app.config["SETTINGS"]
    if weak_secret_key(settings):
        raise click.ClickException(WEAK_SECRET_KEY)
    from store.crypto import MISSING_KEY, MISSING_LOOKUP_KEY

    if not settings.privacy.active_key:  # photos are stored encrypted: without a key none could be kept
        raise click.ClickException(MISSING_KEY)
    if not settings.privacy.lookup_key:  # a transcript line with a number in it is sealed with its lookup hash
        raise click.ClickException(MISSING_LOOKUP_KEY)
    server = settings.server
    if server.engine not in ("waitress", "gunicorn"):
        raise click.ClickException(f'server.engine must be "waitress" or "gunicorn", not {server.engine!r}')
    if prod or server.engine == "gunicorn":
        import serving

        click.echo(f"Serving on http://{server.host}:{server.port}/wechat (gunicorn, "
                   f"{serving.worker_count(server)} {server.worker_class} workers)")
        serving.serve(create_app, server)
        return
    click.echo(f"Serving on http://{server.host}:{server.port}/wechat ({server.threads} threads)")
    arrival.serve(current_app._get_current_object(), host=server.host, port=server.port, threads=server.threads)


class MaskPersonalData(logging.Filter):
    """ID and phone numbers never reach a log line in full, credentials (rules/credentials.py) not at all."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _masked(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info or record.exc_text:
            record.exc_text = _masked(record.exc_text or logging.Formatter().formatException(record.exc_info))
        return True


def _masked(text: str) -> str:
    return scrub_credentials(mask_personal_data(text))


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, MaskPersonalData) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(MaskPersonalData())
        # First in line: its filter changes the record itself, so every handler after it (pytest's
        # caplog, an error reporter) sees the masked text.
        root.handlers.insert(0, handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
