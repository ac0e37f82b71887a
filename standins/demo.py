"""The demo's app: the product app plus `flask chat`, so the product never imports a stand-in.

    flask --app standins.demo chat
"""
from __future__ import annotations

import os

from flask import Flask

import app as product
from standins.chat import chat_command


def create_app(config_path: str | os.PathLike | None = None) -> Flask:
    demo = product.create_app(config_path)
    demo.cli.add_command(chat_command)
    return demo
