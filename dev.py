#!/usr/bin/env python3
"""The README's commands: set everything up, then serve the demo or run the tests.

    python3 dev.py serve   # install, migrate, load demo data, serve http://127.0.0.1:8000/
    python3 dev.py test    # install, then run the whole test suite

Needs only Python 3.11+: it makes a virtual environment in .venv, installs the dependencies listed in
pyproject.toml there and then the project itself (editable), which puts its console scripts in .venv/bin
(``verify-evidence``); again only when pyproject.toml changes.
"""

import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*args: str, **kwargs) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True, **kwargs)


def requirements(with_tests: bool) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    if with_tests:
        deps += project["optional-dependencies"]["test"]
    return deps


def ensure_environment(with_tests: bool) -> None:
    if not PYTHON.exists():
        print(f"Creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    deps = requirements(with_tests)
    stamp = VENV / f".installed-{environment_fingerprint(with_tests)}"
    if not stamp.exists():
        run(str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(str(PYTHON), "-m", "pip", "install", "--quiet", *deps)
        # The project itself, for its console scripts; editable, so they run this checkout's code.
        run(str(PYTHON), "-m", "pip", "install", "--quiet", "--no-deps", "--editable", str(ROOT))
        stamp.touch()


def environment_fingerprint(with_tests: bool) -> str:
    """Changes with anything in pyproject.toml (dependencies, scripts, packaging) and with the checkout's
    place: a virtual environment shared by two checkouts must run the scripts of the one in use."""
    described = f"{ROOT}\n{with_tests}\n".encode() + (ROOT / "pyproject.toml").read_bytes()
    return hashlib.sha256(described).hexdigest()[:16]


def serve(args: list[str]) -> None:
    ensure_environment(with_tests=False)
    manage = [str(PYTHON), "manage.py"]
    run(*manage, "migrate", "--noinput")
    run(*manage, "seed_demo")
    address = args[0] if args else "127.0.0.1:8000"
    print(f"\nServing the portal at http://{address}/  (log in as owner1 / demo; Ctrl+C to stop)\n", flush=True)
    os.execv(str(PYTHON), [str(PYTHON), "manage.py", "runserver", address, "--noreload"])


def test(args: list[str]) -> None:
    ensure_environment(with_tests=True)
    env = {**os.environ, "DJANGO_ALLOW_ASYNC_UNSAFE": "true"}
    os.execve(str(PYTHON), [str(PYTHON), "-m", "pytest", *args], env)


COMMANDS = {"serve": serve, "test": test}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 {Path(__file__).name} {{{'|'.join(COMMANDS)}}} [arguments]")
    COMMANDS[sys.argv[1]](sys.argv[2:])
