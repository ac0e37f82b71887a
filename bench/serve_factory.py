"""Serves `module:factory` with the production server and the [server] settings of COLLECTOR_CONFIG,
so the bench runs the app and its bare-Flask baseline under exactly the same server.

    python bench/serve_factory.py app:create_app
"""
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import serving  # noqa: E402
from settings import load_settings  # noqa: E402

if __name__ == "__main__":
    module, factory = sys.argv[1].split(":")
    serving.serve(getattr(importlib.import_module(module), factory), load_settings().server)
