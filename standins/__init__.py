"""Local stand-ins for the services outside this app, and a WeChat user to talk to it: never shipped code.

- `wechat_api`: the WeChat official-account HTTP API (tokens, media, customer-service and template
  messages, OAuth);
- `wechatpay`: WeChat Pay API v3 (signed requests and answers, encrypted notifications, refunds);
- `sms`: Tencent Cloud SMS (TC3 signatures, its error codes);
- `loopback`: the 127.0.0.1 HTTP server all three run on;
- `simulator`: WeChat's side of the webhook (signed, optionally AES-encrypted XML pushes);
- `chat`: `flask chat`, a candidate's chat in a terminal, served by `demo` (`flask --app standins.demo chat`).

Each speaks the real protocol on 127.0.0.1, so the product's real clients cannot tell the difference.
The tests, `make run`'s chat, the bench and the load test use them from here. No product module (app,
bot, handlers, rules, store, payments, notify, jobs, staff, console, …) imports this package:
tests/test_standins_boundary.py fails if one does.
"""
