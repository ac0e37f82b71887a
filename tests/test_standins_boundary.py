"""What ships is what runs (issue 15): the local stand-ins live in `standins/`, and no product module
imports them, neither in its source nor when the product app is built with all its commands."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import AES_KEY, APPID, SECRET, TOKEN
from tests.journey import write_config

PROJECT = Path(__file__).resolve().parents[1]
STANDINS = "standins"
# Everything else at the top of the project that holds Python is product code.
NOT_PRODUCT = {STANDINS, "tests", "loadtest", "bench"}
MOVED = {
    "bot/fake_wechat.py": "wechat_api.py",
    "payments/fake_wechatpay.py": "wechatpay.py",
    "notify/fake_sms.py": "sms.py",
    "bot/loopback.py": "loopback.py",
    "bot/simulator.py": "simulator.py",
    "bot/chat.py": "chat.py",
}
PRODUCT_NAMES = {"app.py", "bot", "handlers", "rules", "store", "payments", "notify", "jobs", "staff", "console",
                 "serving.py", "health.py", "pacing.py", "settings.py", "messages.py"}


def product_roots() -> list[Path]:
    roots = []
    for path in sorted(PROJECT.iterdir()):
        if path.name.startswith(".") or path.name in NOT_PRODUCT:
            continue
        if path.suffix == ".py" or (path.is_dir() and any(path.rglob("*.py"))):
            roots.append(path)
    return roots


def product_sources() -> list[Path]:
    files = []
    for root in product_roots():
        files.extend([root] if root.is_file() else sorted(root.rglob("*.py")))
    return files


def _is_standins(module: str | None) -> bool:
    return module is not None and (module == STANDINS or module.startswith(STANDINS + "."))


def standins_imports(source: Path, root: Path = PROJECT) -> list[str]:
    """Each place in `source` that imports a stand-in: import statements, and import_module("standins…")."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if node.level == 0 else []
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            names = [node.args[0].value] if called in ("import_module", "__import__") else []
        else:
            continue
        found.extend(f"{source.relative_to(root)}:{node.lineno} {name}" for name in names
                     if isinstance(name, str) and _is_standins(name))
    return found


def test_the_walk_covers_every_product_package():
    assert PRODUCT_NAMES <= {root.name for root in product_roots()}
    assert len(product_sources()) > 50


def test_no_product_module_imports_a_standin():
    offenders = [hit for source in product_sources() for hit in standins_imports(source)]
    assert offenders == []


def test_the_check_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "offender.py"
    source.write_text("import standins\nfrom standins.chat import chat_command\nimport standins.sms as sms\n"
                      "import importlib\nimportlib.import_module('standins.simulator')\n"
                      "import standinsx\nfrom . import standins\n", encoding="utf-8")
    hits = [hit.split(" ")[1] for hit in standins_imports(source, root=tmp_path)]
    assert hits == ["standins", "standins.chat", "standins.sms", "standins.simulator"]


def test_the_standins_are_in_their_own_package_and_nowhere_else():
    package = PROJECT / STANDINS
    assert (package / "__init__.py").is_file()
    for old, new in MOVED.items():
        assert (package / new).is_file(), new
        assert not (PROJECT / old).exists(), old
    assert [path.name for path in product_sources() if path.name.startswith("fake_")] == []


def test_the_product_app_and_its_commands_load_no_standin_and_the_demo_adds_chat(tmp_path):
    config = write_config(tmp_path, database_url=f"sqlite:///{tmp_path / 'boundary.db'}",
                          api_base_url="http://127.0.0.1:9/cgi-bin/", token=TOKEN, appid=APPID, secret=SECRET,
                          aes_key=AES_KEY, sections={})
    script = """
import json, sys
import click
from flask.cli import ScriptInfo
factory = sys.argv[2]
module, name = factory.split(":")
app = getattr(__import__(module, fromlist=[name]), name)(sys.argv[1])
ctx = click.Context(app.cli, obj=ScriptInfo(create_app=lambda: app))
commands = app.cli.list_commands(ctx)
loaded = sorted(m for m in sys.modules if m == "standins" or m.startswith("standins."))
print(json.dumps({"commands": commands, "standins": loaded}))
"""

    def build(factory: str) -> dict:
        done = subprocess.run([sys.executable, "-c", script, str(config), factory], cwd=PROJECT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    product = build("app:create_app")
    assert product["standins"] == []
    assert "serve" in product["commands"] and "chat" not in product["commands"]
    demo = build("standins.demo:create_app")
    assert "chat" in demo["commands"] and "standins.chat" in demo["standins"]
