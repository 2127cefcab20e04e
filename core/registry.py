"""Adapter registry: named adapters (e.g. `finance`, `hr`), each with numbered versions and one active.

Layout under `$ASSISTANT_HOME/adapters/NAME/`: `versions/vN/` (peft adapter files, or a whole model folder
for a full fine-tune, + `meta.json`: base model spec and fingerprint, dataset hashes, recipe, metrics,
creation time) and `registry.json` (the active version). Versions appear by atomic rename, `registry.json`
is replaced atomically, writers take a lock.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from core.errors import AssistantError, NotFound
from core.files import atomic_write_text, fsync_dir
from core.settings import Settings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass
class AdapterVersion:
    name: str
    version: str
    path: Path
    meta: dict[str, Any]
    active: bool

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def adapters_root(settings: Settings) -> Path:
    return settings.adapters_dir or settings.home / "adapters"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise AssistantError(
            f"invalid adapter name '{name}': use 1-40 lowercase letters, digits, '-' or '_' (e.g. finance, hr)"
        )
    return name


def parse_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    check_name(name)
    if version and not re.fullmatch(r"v\d+", version):
        raise AssistantError(f"invalid version '{version}' in '{ref}': versions look like v1, v2, ...")
    return name, version or None


def _lock(settings: Settings, name: str) -> FileLock:
    d = adapters_root(settings) / name
    d.mkdir(parents=True, exist_ok=True)
    return FileLock(str(d / ".lock"), timeout=settings.lock_timeout_s)


def _state(settings: Settings, name: str) -> dict[str, Any]:
    f = adapters_root(settings) / name / "registry.json"
    if not f.exists():
        return {"active": None}
    return json.loads(f.read_text(encoding="utf-8"))


def _write_state(settings: Settings, name: str, state: dict[str, Any]) -> None:
    atomic_write_text(adapters_root(settings) / name / "registry.json", json.dumps(state, indent=1))


def _versions(settings: Settings, name: str) -> list[str]:
    d = adapters_root(settings) / name / "versions"
    if not d.is_dir():
        return []
    found = [p.name for p in d.iterdir() if re.fullmatch(r"v\d+", p.name) and (p / "meta.json").exists()]
    return sorted(found, key=lambda v: int(v[1:]))


def register(settings: Settings, name: str, adapter_dir: Path, meta: dict[str, Any],
             activate: bool | None = None) -> AdapterVersion:
    """Store a trained adapter as the next version of `name`. `activate=None`: only if none is active yet."""
    check_name(name)
    if not (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "config.json").exists():
        raise AssistantError(f"{adapter_dir} holds no adapter or model (adapter_config.json, config.json missing)")
    try:
        with _lock(settings, name):
            versions = _versions(settings, name)
            version = f"v{int(versions[-1][1:]) + 1 if versions else 1}"
            vdir = adapters_root(settings) / name / "versions"
            vdir.mkdir(parents=True, exist_ok=True)
            tmp = vdir / f".tmp-{uuid.uuid4().hex[:8]}"
            shutil.copytree(adapter_dir, tmp, ignore=shutil.ignore_patterns("trainer.pt"))
            full = dict(meta, name=name, version=version, created=datetime.now(UTC).isoformat(timespec="seconds"))
            (tmp / "meta.json").write_text(json.dumps(full, ensure_ascii=False, indent=1), encoding="utf-8")
            tmp.rename(vdir / version)
            fsync_dir(vdir)
            state = _state(settings, name)
            if activate or (activate is None and not state.get("active")):
                state["active"] = version
                _write_state(settings, name, state)
    except Timeout as exc:
        raise AssistantError(f"adapter '{name}' is being changed by another process; try again") from exc
    return get(settings, f"{name}@{version}")


def get(settings: Settings, ref: str) -> AdapterVersion:
    """`name` (its active version) or `name@vN`."""
    name, version = parse_ref(ref)
    versions = _versions(settings, name)
    if not versions:
        known = ", ".join(list_names(settings)) or "none yet"
        raise NotFound(f"no adapter named '{name}' (adapters: {known}); train one with `finetune train`")
    active = _state(settings, name).get("active")
    if version is None:
        if not active:
            raise NotFound(f"adapter '{name}' has no active version; `finetune promote {name}@{versions[-1]}`")
        version = active
    if version not in versions:
        raise NotFound(f"adapter '{name}' has no version {version} (versions: {', '.join(versions)})")
    path = adapters_root(settings) / name / "versions" / version
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    return AdapterVersion(name, version, path, meta, version == active)


def list_names(settings: Settings) -> list[str]:
    root = adapters_root(settings)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _versions(settings, p.name))


def list_versions(settings: Settings, name: str) -> list[AdapterVersion]:
    return [get(settings, f"{name}@{v}") for v in _versions(settings, name)]


def promote(settings: Settings, ref: str) -> AdapterVersion:
    name, version = parse_ref(ref)
    if version is None:
        raise AssistantError(f"name the version to promote, e.g. {name}@v2 (`finetune show {name}` lists them)")
    target = get(settings, ref)
    with _lock(settings, name):
        state = _state(settings, name)
        state["active"] = version
        _write_state(settings, name, state)
    return get(settings, target.ref)


def state_stamp(settings: Settings, name: str) -> str:
    """Changes with every promotion or roll-back of `name` (even back to an earlier version): what was made under
    one activation is told apart from what is made under the next."""
    f = adapters_root(settings) / name / "registry.json"
    try:
        return str(f.stat().st_mtime_ns)
    except OSError:
        return ""


def active_ref(settings: Settings, name: str) -> str | None:
    """`name@vN` of the active version, or None."""
    active = _state(settings, check_name(name)).get("active")
    return f"{name}@{active}" if active else None


def promotion_event(before: str | None, after: str) -> str:
    """The audit event for making `after` active: a roll back when it is older than the version it replaces."""
    older = before is not None and int(after.rpartition("@v")[2]) < int(before.rpartition("@v")[2])
    return "adapter_rolled_back" if older else "adapter_promoted"


def promote_if_active(settings: Settings, ref: str, expected: str | None) -> str | None:
    """Promote `ref` only if the active version is still `expected` (checked and changed under the lock, so
    a promotion or rollback made meanwhile is never overridden). None when promoted, else the active version
    that stood in the way ("none" when there is none)."""
    name, version = parse_ref(ref)
    get(settings, ref)  # exists?
    try:
        with _lock(settings, name):
            state = _state(settings, name)
            if state.get("active") != expected:
                return state.get("active") or "none"
            state["active"] = version
            _write_state(settings, name, state)
    except Timeout as exc:
        raise AssistantError(f"adapter '{name}' is being changed by another process; try again") from exc
    return None


def remove(settings: Settings, ref: str) -> list[str]:
    """Remove one version (not the active one while others remain) or, given a bare name, the adapter."""
    name, version = parse_ref(ref)
    get(settings, ref if version else f"{name}@{(_versions(settings, name) or ['v1'])[0]}")  # exists?
    with _lock(settings, name):
        if version is None:
            removed = [f"{name}@{v}" for v in _versions(settings, name)]
            shutil.rmtree(adapters_root(settings) / name / "versions")
            (adapters_root(settings) / name / "registry.json").unlink(missing_ok=True)
            return removed
        state = _state(settings, name)
        others = [v for v in _versions(settings, name) if v != version]
        if state.get("active") == version and others:
            raise AssistantError(
                f"{name}@{version} is the active version; promote another first (e.g. `finetune promote "
                f"{name}@{others[-1]}`) or remove the whole adapter with `finetune remove {name}`"
            )
        # rename first so a crash never leaves a half-deleted version that still looks valid
        path = adapters_root(settings) / name / "versions" / version
        trash = path.with_name(f".trash-{version}-{uuid.uuid4().hex[:6]}")
        path.rename(trash)
        if state.get("active") == version:
            state["active"] = None
            _write_state(settings, name, state)
        shutil.rmtree(trash)
        return [f"{name}@{version}"]


def update_metrics(settings: Settings, ref: str, metrics: dict[str, Any]) -> AdapterVersion:
    av = get(settings, ref)
    with _lock(settings, av.name):
        meta = dict(av.meta)
        meta.setdefault("metrics", {}).update(metrics)
        atomic_write_text(av.path / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1))
    return get(settings, av.ref)


def check_base(av: AdapterVersion, fingerprint: str, spec: str) -> None:
    if av.meta.get("base_fingerprint") != fingerprint:
        raise AssistantError(
            f"adapter {av.ref} was trained on base model '{av.meta.get('base')}' "
            f"(fingerprint {av.meta.get('base_fingerprint')}), not on '{spec}' (fingerprint {fingerprint}); "
            f"load it with --base {av.meta.get('base')} or train a new version on this base"
        )


def is_full(av: AdapterVersion) -> bool:
    """A full fine-tune: the version folder is a whole model, served beside the base instead of on it."""
    return av.meta.get("method") == "full"


def load_full(lm: Any, av: AdapterVersion, settings: Settings) -> Any:
    """The full fine-tune `av` as a LoadedModel, after checking it was trained from `lm`'s base."""
    from core.models import base_fingerprint, load_model

    base = lm.model.get_base_model() if hasattr(lm.model, "peft_config") else lm.model
    check_base(av, base_fingerprint(base), lm.spec)
    return load_model(str(av.path), settings)


def apply_adapter(lm: Any, av: AdapterVersion, adapter_name: str | None = None) -> Any:
    """Load `av` onto `lm.model` (a LoadedModel) after checking the base; returns the peft model."""
    from peft import PeftModel

    from core.models import base_fingerprint

    if is_full(av):
        raise AssistantError(f"{av.ref} is a fully fine-tuned model, not an adapter: load it with load_full")
    model = lm.model
    is_peft = hasattr(model, "peft_config")
    base = model.get_base_model() if is_peft else model
    check_base(av, base_fingerprint(base), lm.spec)
    key = adapter_name or av.ref.replace("@", "-")
    if is_peft:
        if key not in model.peft_config:
            model.load_adapter(str(av.path), adapter_name=key)
        model.set_adapter(key)
        return model
    return PeftModel.from_pretrained(model, str(av.path), adapter_name=key)
