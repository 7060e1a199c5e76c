"""Reading and writing the user settings (config.yaml + the secrets store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

from mlx_stack.core.config_schema import KEYS, SettingValue, get_key, validate_file_values
from mlx_stack.core.yaml_text import parse_yaml
from mlx_stack.errors import StateError
from mlx_stack.json_types import as_object
from mlx_stack.paths import Paths
from mlx_stack.system import secrets
from mlx_stack.system.fs import atomic_write, read_state_text
from mlx_stack.system.locks import file_lock


@dataclass(frozen=True)
class Setting:
    key: str
    value: SettingValue
    default: SettingValue
    source: str  # "default" | "config.yaml" | "secrets"
    secret: bool

    def shown(self) -> SettingValue:
        """The value as it may be displayed (secrets masked)."""
        if self.secret:
            return secrets.mask(str(self.value)) if self.value else None  # a secret is text
        return self.value

    def as_dict(self) -> dict[str, SettingValue]:
        return {
            "key": self.key,
            "value": self.shown(),
            "default": self.default,
            "source": self.source,
        }


_RESET_HINT = "fix the file by hand, or move it away and run `mlx-stack config reset --yes`"


def _read_file(p: Paths) -> dict[str, SettingValue]:
    path = p.config_file
    text = read_state_text(path, _RESET_HINT)
    if text is None:
        return {}
    data = parse_yaml(text, str(path), hint=_RESET_HINT)
    if data is None:
        return {}
    values = as_object(data)
    if values is None:
        raise StateError(
            f"{path}: expected a mapping of key: value, found {type(data).__name__}",
            hint=_RESET_HINT,
        )
    return validate_file_values(values, str(path))


class Config:
    """A snapshot of every setting, with where each value came from."""

    def __init__(self, p: Paths):
        self.paths = p
        self._file = _read_file(p)

    # The type of each key's value (what its parser returns), for the callers that name it.
    @overload
    def get(self, name: Literal["memory-budget-pct", "litellm-port", "log-max-size-mb",
                                "log-max-files"]) -> int: ...
    @overload
    def get(self, name: Literal["auto-health-check", "log-prompts"]) -> bool: ...
    @overload
    def get(self, name: Literal["default-quant"]) -> str: ...
    @overload
    def get(self, name: Literal["model-dir", "openrouter-key"]) -> str | None: ...
    @overload
    def get(self, name: str) -> SettingValue: ...

    def get(self, name: str) -> SettingValue:
        return self.setting(name).value

    def setting(self, name: str) -> Setting:
        key = get_key(name)
        if key.secret:
            value = secrets.read_secret(self.paths, name)
            return Setting(name, value, key.default, "secrets" if value else "default", True)
        if name in self._file:
            return Setting(name, self._file[name], key.default, "config.yaml", False)
        return Setting(name, key.default, key.default, "default", False)

    def all(self) -> list[Setting]:
        return [self.setting(name) for name in KEYS]


def load(p: Paths) -> Config:
    return Config(p)


def set_value(p: Paths, name: str, raw: str) -> Setting:
    """Validate and store one setting atomically, under the config lock."""
    key = get_key(name)
    value = key.parse(raw)
    if name == "model-dir":
        _check_folder(name, str(value))  # a path key's parser gives text
    with file_lock(p.config_lock_file, what="config"):
        if key.secret:
            secrets.write_secret(p, name, str(value))  # a secret key's parser gives text
        else:
            current = _read_file(p)  # refuses to overwrite a corrupt file
            current[name] = value
            _write_file(p, current)
    return Config(p).setting(name)


def _check_folder(name: str, value: str) -> None:
    """A folder setting must name a folder that exists (not a file, not a typo)."""
    from pathlib import Path

    from mlx_stack.errors import UsageError

    folder = Path(value)
    try:
        ok, exists = folder.is_dir(), folder.exists()
    except OSError:
        ok, exists = False, False
    if not ok:
        if exists:
            raise UsageError(f"invalid value for {name}: {value} is not a folder",
                             hint="give the folder that holds (or will hold) the models")
        raise UsageError(f"invalid value for {name}: {value} does not exist",
                         hint=f"create it first (`mkdir -p {value}`), then set it again")


def unset_value(p: Paths, name: str) -> Setting:
    key = get_key(name)
    with file_lock(p.config_lock_file, what="config"):
        if key.secret:
            secrets.delete_secret(p, name)
        else:
            current = _read_file(p)
            current.pop(name, None)
            _write_file(p, current)
    return Config(p).setting(name)


def reset(p: Paths) -> None:
    """Back to defaults: remove config.yaml (even a corrupt one) and stored keys."""
    with file_lock(p.config_lock_file, what="config"):
        p.config_file.unlink(missing_ok=True)
        for name, key in KEYS.items():
            if key.secret:
                secrets.delete_secret(p, name)


def _write_file(p: Paths, values: dict[str, SettingValue]) -> None:
    import yaml

    ordered = {k: values[k] for k in KEYS if k in values}
    text = "# mlx-stack settings; edit with `mlx-stack config set KEY VALUE`\n"
    text += yaml.safe_dump(ordered, sort_keys=False) if ordered else ""
    atomic_write(p.config_file, text)
