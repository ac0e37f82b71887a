"""The bench's baseline: a bare Flask app that answers WeChat's URL check and every push with "success"."""
from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/wechat")
    def verify():
        return request.args.get("echostr", "")

    @app.post("/wechat")
    def push():
        request.get_data()
        return "success"

    return app
