"""A run's identity: the hash that names its directory and finds it again after a kill.

`run_key` is registered as the OmegaConf resolver `tnbench_key`, used by conf/config.yaml's
`run_id`. Nothing here imports torch: Hydra resolves it while it composes.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf


def run_key(*parts: Any) -> str:
    """Short stable hash of config sections (DictConfigs or plain values)."""
    plain = [OmegaConf.to_container(p, resolve=True) if isinstance(p, DictConfig) else p for p in parts]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("tnbench_key"):
        OmegaConf.register_new_resolver("tnbench_key", run_key)
