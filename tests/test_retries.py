"""Issue 8.1–8.2: no candidate is left without an answer.

WeChat gives the webhook 5 s, then drops the connection and sends the same MsgId again (up to three
retries about 5 s apart). Here `answer_within_seconds` stands for those 5 s, shortened so the tests run
quickly (a second app on the same database, once the candidate is set up); slow steps are made slow
for real by holding the fake WeChat API's answers.
"""
from __future__ import annotations

import signal
import socket
import threading
import time
from urllib.parse import urlparse

from sqlalchemy import func, select

from standins.simulator import WeChatSimulator, http_transport
from store.models import InboundKey, Message, Photo
from tests.conftest import AES_KEY, APPID, TOKEN, simulator_for
from tests.journey import Chat, seed_roster
from tests.test_lost_work import free_port, serve, wait_until_up

PHOTO = "webmorph_004_03_blue_ok.jpg"
UPLOAD = "/cgi-bin/media/upload"
DOWNLOAD = "/cgi-bin/media/get"


def count(app, model, *where) -> int:
    with app.extensions["collector"].db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def approved_chat(app, fake_wechat, photo, openid: str) -> Chat:
    """A candidate whose photo was approved: 查看照片 then uploads it to WeChat, a step that waits on the API."""
    chat = Chat(app, simulator_for(app), fake_wechat, openid=openid)
    graduate = seed_roster(app)[0]
    chat.walk_to_photo(graduate)
    reply = chat.send_photo(photo(PHOTO))
    assert chat.pay(chat.pay_link(reply)).status_code == 200
    result = app.test_cli_runner().invoke(args=["review", "approve", graduate["id_number"]])
    assert result.exit_code == 0, result.output
    assert chat.state() == "approved"
    return chat


def attempts_at(app, openid: str, send, offsets: list[float]) -> list:
    """WeChat's attempts at one message, each on its own connection, started at these offsets (s)."""
    replies: list = [None] * len(offsets)
    start = time.monotonic()

    def attempt(index: int, offset: float) -> None:
        time.sleep(max(0.0, start + offset - time.monotonic()))
        replies[index] = send(simulator_for(app))

    threads = [threading.Thread(target=attempt, args=(i, offset)) for i, offset in enumerate(offsets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def images_sent_to(fake_wechat, openid: str) -> list[dict]:
    return [m for m in fake_wechat.messages_to(openid) if m.get("msgtype") == "image"]


def test_a_retry_waits_for_a_slow_step_and_gets_its_reply(make_app, fake_wechat, photo):
    # The lease (0.6 s) runs out five times over while the step works: only the owner's heartbeat
    # keeps the retries from running the step a second time.
    chat = approved_chat(make_app(), fake_wechat, photo, "o_slow_view")
    app = make_app(wechat={"answer_within_seconds": 2.5, "claim_lease_seconds": 0.6, "http_timeout_seconds": 6.0})
    sent_before = len(fake_wechat.sent_messages)
    fake_wechat.delay_path(UPLOAD, 3.0)
    msg_id = chat.wechat.next_msg_id()
    first, gave_up, waited = attempts_at(app, chat.openid, lambda sim: sim.text(chat.openid, "查看照片", msg_id=msg_id),
                                         [0.0, 0.2, 2.0])
    assert gave_up.status == 200 and gave_up.empty  # it waited 2 s, until 2.2 s, and the step took 3 s
    assert waited.msg_type == "image"  # arrived at 2 s, waited, and took the reply at about 3 s
    assert fake_wechat.uploaded_media[waited.media_id] == photo(PHOTO)
    assert sum(1 for request in fake_wechat.requests if request[1] == UPLOAD) == 1
    assert count(app, Message, Message.openid == chat.openid, Message.wechat_msg_id == str(msg_id)) == 1
    time.sleep(0.5)
    assert len(fake_wechat.sent_messages) == sent_before  # answered passively, not twice


def test_a_step_that_outlasts_every_attempt_sends_its_reply_once_by_customer_service(make_app, fake_wechat, photo):
    chat = approved_chat(make_app(), fake_wechat, photo, "o_slower_view")
    app = make_app(wechat={"answer_within_seconds": 1.0})
    fake_wechat.delay_path(UPLOAD, 2.5)
    msg_id = chat.wechat.next_msg_id()
    replies = attempts_at(app, chat.openid, lambda sim: sim.text(chat.openid, "查看照片", msg_id=msg_id),
                          [0.0, 0.1, 0.4])
    assert all(reply.status == 200 and reply.empty for reply in replies), replies
    [image] = images_sent_to(fake_wechat, chat.openid)
    assert fake_wechat.uploaded_media[image["image"]["media_id"]] == photo(PHOTO)

    late = simulator_for(app).text(chat.openid, "查看照片", msg_id=msg_id)  # a retry after it was sent
    assert late.status == 200 and late.empty
    time.sleep(0.5)
    assert len(images_sent_to(fake_wechat, chat.openid)) == 1
    with app.extensions["collector"].db.session() as session:
        transcript = session.scalars(select(Message.channel).where(Message.openid == chat.openid,
                                                                   Message.direction == "out")
                                     .order_by(Message.id.desc()).limit(1)).all()
    assert transcript == ["custom"]


def test_the_same_message_three_times_at_once_is_run_once_and_answered_alike(make_app, fake_wechat, photo):
    app = make_app()
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_triple")
    chat.walk_to_photo(seed_roster(app)[0])
    media_id = fake_wechat.add_media(photo(PHOTO), delay=1.0)
    msg_id = chat.wechat.next_msg_id()
    replies = attempts_at(app, chat.openid, lambda sim: sim.image(chat.openid, media_id, msg_id=msg_id),
                          [0.0, 0.0, 0.0])
    assert all("检查通过" in reply.content for reply in replies), replies
    assert len({reply.content for reply in replies}) == 1
    assert sum(1 for request in fake_wechat.requests if request[1] == DOWNLOAD) == 1
    assert count(app, Photo) == 1
    assert count(app, Message, Message.wechat_msg_id == str(msg_id)) == 1
    assert chat.state() == "payment"


def slow_sending_transport(base_url: str, pause: float, sent_at: list[float]):
    """Sends a request's head, then its body `pause` seconds later, the way a request waits in a busy
    server's queue: it has arrived, but nothing can run it yet. Records when its first byte went out."""
    address = urlparse(base_url)

    def send(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
            head = (f"{method} {path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: text/xml\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            sent_at.append(time.monotonic())
            conn.sendall(head)
            time.sleep(pause)
            conn.sendall(body)
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        status_line, _, rest = response.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]

    return send


def test_the_reply_budget_counts_from_the_request_s_arrival(make_app, fake_wechat, photo, tmp_path):
    port = free_port()
    app = make_app(wechat={"reply_budget_seconds": 2.0}, server={"port": port})
    graduate = seed_roster(app)[0]
    server = serve(tmp_path / "config.toml")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server)
        chat = Chat(app, WeChatSimulator(TOKEN, APPID, AES_KEY, http_transport(url)), fake_wechat, openid="o_queued")
        chat.walk_to_photo(graduate)
        sent_at: list[float] = []
        chat.wechat = WeChatSimulator(TOKEN, APPID, AES_KEY, slow_sending_transport(url, 1.5, sent_at))
        reply = chat.send_photo(photo(PHOTO), delay=4.0)
        answered_after = time.monotonic() - sent_at[0]
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    assert "正在检查" in reply
    # Counted from arrival: 2 s (+ the hand-over margin); from the step's start it would be 1.5 + 2 s.
    assert answered_after < 3.0, answered_after


def test_a_retry_to_another_server_runs_a_message_whose_server_was_killed(make_app, fake_wechat, photo, tmp_path):
    port = free_port()
    app = make_app(server={"port": port}, wechat={"claim_lease_seconds": 1.5})
    graduate = seed_roster(app)[0]
    first_server = serve(tmp_path / "config.toml")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, first_server)
        wechat = WeChatSimulator(TOKEN, APPID, AES_KEY, http_transport(url))
        chat = Chat(app, wechat, fake_wechat, openid="o_crash")
        chat.walk_to_photo(graduate)
        media_id = fake_wechat.add_media(photo(PHOTO))
        fake_wechat.delay_path(DOWNLOAD, 10.0)  # the first server dies while downloading the photo
        msg_id = wechat.next_msg_id()
        threading.Thread(target=lambda: _ignore_errors(lambda: wechat.image(chat.openid, media_id, msg_id=msg_id)),
                         daemon=True).start()
        _wait_for(lambda: any(request[1] == DOWNLOAD for request in fake_wechat.requests))
    finally:
        first_server.send_signal(signal.SIGKILL)
        first_server.wait(timeout=10)
    with app.extensions["collector"].db.session() as session:
        claim = session.get(InboundKey, f"msg:{msg_id}")
        assert claim is not None and not claim.done
    fake_wechat.delay_path(DOWNLOAD, 0.0)

    second_server = serve(tmp_path / "config.toml")
    try:
        wait_until_up(url, second_server)
        time.sleep(1.0)
        retry = WeChatSimulator(TOKEN, APPID, AES_KEY, http_transport(url)).image(chat.openid, media_id, msg_id=msg_id)
        verdict = retry.content
        if "正在检查" in verdict:  # the cold server's first check outlasted the budget: the verdict follows
            verdict = fake_wechat.wait_for_messages(1, timeout=30)[-1]["text"]["content"]
    finally:
        second_server.send_signal(signal.SIGKILL)
        second_server.wait(timeout=10)
    assert "检查通过" in verdict, retry
    assert chat.state() == "payment"
    assert count(app, Photo) == 1
    assert count(app, Message, Message.wechat_msg_id == str(msg_id)) == 1  # the transcript shows it once


def _ignore_errors(call) -> None:
    try:
        call()
    except Exception:  # the connection dies with the server
        pass


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
