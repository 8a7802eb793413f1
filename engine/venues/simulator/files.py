"""Reading the simulator's TOML/JSON files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from engine.exceptions import ConfigError


def load_mapping(path: Path) -> dict[str, Any]:
    """Read a ``.toml`` or ``.json`` file into a mapping, with a clear error on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        # a binary file (or another encoding): its bytes say nothing useful in a message
        raise ConfigError(f"{path} is not UTF-8 text; expected a .toml or .json file") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        loaded = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid {path.suffix.lstrip('.').upper()}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold an object at the top level")
    return loaded
