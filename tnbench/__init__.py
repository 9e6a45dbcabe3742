"""tnbench: compress neural networks with tensor networks and compare papers on equal terms.

From Python: `tnbench.run(overrides=[...])` or `tnbench.run(cfg)` runs one job and returns a
`tnbench.Result` (record, compressed model, run directory); `tnbench.compose(overrides)` gives
the config the command line would run; `tnbench.load(run_dir)` the compressed model a run
saved (tnbench.api). They load on first use, so `import tnbench` stays light (no torch).
"""

__version__ = "0.1.0"

_API = ("run", "compose", "load", "Result")


def __getattr__(name: str):
    if name in _API:
        from tnbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'tnbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
