"""Targets: where records go. One module per kind, one entry in TARGETS (see base.Target)."""
from __future__ import annotations

import importlib

TARGETS: dict[str, str] = {
    "local": "engine.targets.local:open_local",
    "idwell": "engine.targets.idwell:open_idwell",
}


def open_target(tenant, *, read_only: bool = False):
    """The tenant's target; `read_only` (plan): nothing is created to look at it."""
    if tenant.target is None:
        from engine.errors import ConfigError
        raise ConfigError([], f"tenant '{tenant.id}' declares no target: add a target section to "
                              f"{tenant.path} (docs/config.md) to plan or run it")
    module_name, _, fn = TARGETS[tenant.target.type].partition(":")
    return getattr(importlib.import_module(module_name), fn)(tenant, read_only=read_only)
