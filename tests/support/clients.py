"""Real pip and uv, run as users run them, in fresh virtual environments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

UV = Path(sys.executable).with_name("uv")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any pip or uv configuration that could point elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "HOSTFIT_")) and k not in ("VIRTUAL_ENV",)
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(home / "uv-cache"),
        XDG_CONFIG_HOME=str(home / "config"),
    )
    env.update(extra)
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=300
    )


def new_venv(path: Path) -> Path:
    """A fresh virtual environment without pip; returns its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(
    python: Path, index: str, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    return run([*command, "--index-url", index, *args], env)


def uv_install(
    python: Path, index: str, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [str(UV), "pip", "install", "--python", str(python), "--index-url", index, *args]
    return run(command, env)


def python_output(python: Path, code: str) -> str:
    result = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()
