"""Benchmark: finite initialization by partial norms (arXiv 2309.06577) vs a log-domain normalizer.

Random tensor networks with Gaussian(1, 0.5) nodes (absolute values for the lineal norm), float64
(and float32, the paper's public code's dtype, for the step profile), one intra-op thread,
normalized to a target norm F within the paper's tolerance (1e-3 F, 1e3 F):

  paper  the paper's FTNR / LTNR protocol (tnbench.functional.partial_norm.normalize_partial), with the
         left environments kept and rescaled; a budget of MAX_STEPS normalization steps so that
         the real step count shows (the paper's public code stops at 100: `within_100` says
         whether that budget would have been enough);
  log    normalize_log: one pass in log space with per-node rescaled environments, then one
         rescaling of every node.

Layouts: TT (nodes (b, p, b)) and TT-matrix / MPO (nodes (b, p, p, b): in and out legs of size
p, as in the paper's TT-M layers; with o * i = p instead, a TT-matrix has exactly the norms of the
TT with the same entries, since a norm only sees the merged physical leg). Sweeps:

  steps_vs_N   F = p^N (the paper's target): float64, N = 2..250 while F^2 fits in float64; float32,
               N = 2..50 whatever F (past N ~ 15-35, F^2 itself overflows float32 and the run fails,
               with its reason). Two counters: `passes`, returns to step 2 (a full-norm evaluation
               after a rescaling) -- what the paper's "normalization steps" resemble, 0 for N < 10,
               1 up to N ~ 27, then fast growth -- and `steps`, every rescaling of the nodes in
               steps 3-5 (the inner loop's work). `partial_norm_profile.png` overlays the paper's
               profile on both, per dtype;
  time_vs_N    F = 1, N = 2..1000, b = 8, both protocols, both norms; the exponent of time vs N
               is fitted over N = 10..1000 and over 100..1000 (small networks sit in the CPU
               caches, so per-node time grows until they no longer do; the contraction count is
               the machine-independent measure); the from-scratch variant of the paper protocol
               (the public code's, no kept environments) up to N = 200;
  vs_p, vs_b   N = 300, F = 1 (at N = 300 the plain norm overflows for all but the smallest p, b);
  big          the log-domain normalizer on N = 1000, p = 16, b = 64: TT, and TT-matrix with
               o = i = 4 (o = i = 16 would be 8 GB of float64 nodes).

Results: results/bench/partial_norm_scaling.{json,csv,md} and partial_norm_*.png. Timings are
wall-clock minima over repeats on whatever else runs on the machine; step and contraction counts
are exact.

    .venv/bin/python -m pytest -m bench tests/bench/test_partial_norm_scaling.py -o addopts="" -s
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tnbench.functional.network import Network
from tnbench.functional.partial_norm import Environments, log_norm, normalize_log, normalize_partial
from tnbench.functional.tt import tt_matrix_network, tt_matrix_shapes, tt_network, tt_shapes

pytestmark = pytest.mark.bench

COMMAND = '.venv/bin/python -m pytest -m bench tests/bench/test_partial_norm_scaling.py -o addopts="" -s'
MAX_STEPS = 5000
STEPS_N32 = [2, 5, 8, 10, 12, 15, 18, 20, 22, 25, 27, 30, 35, 40, 50]
DTYPES = {"float64": torch.float64, "float32": torch.float32}
# the paper's step profile (papers.md section 4): 0 steps for N < 10, 1 up to N ~ 27, then fast growth
PAPER_PROFILE = [(2, 0), (9, 0), (10, 1), (27, 1)]
TOLERANCE = (1e-3, 1e3)
STEPS_N = [2, 5, 10, 15, 20, 27, 35, 50, 75, 100, 150, 200, 250]
TIME_N = [2, 5, 10, 20, 50, 100, 200, 500, 1000]
FIT_RANGES = ((10, 1000), (100, 1000))
VS_N = 300


def network(layout: str, n: int, p: int, b: int) -> tuple[Network, list[tuple[int, ...]]]:
    if layout == "tt":
        return tt_network(n), tt_shapes([p] * n, b)
    if layout == "tt-matrix":
        return tt_matrix_network(n), tt_matrix_shapes([p] * n, [p] * n, b)
    o = math.isqrt(p)  # "tt-matrix-split": o = i = sqrt(p)
    return tt_matrix_network(n), tt_matrix_shapes([o] * n, [p // o] * n, b)


def nodes_for(shapes: list[tuple[int, ...]], norm: str, seed: int, dtype: str = "float64") -> list[torch.Tensor]:
    """Drawn in float64 and rounded, so both dtypes normalize the same network."""
    g = torch.Generator().manual_seed(seed)
    nodes = [torch.randn(s, generator=g, dtype=torch.float64) * 0.5 + 1.0 for s in shapes]
    return [(t.abs() if norm == "lineal" else t).to(DTYPES[dtype]) for t in nodes]


def run_case(sweep: str, layout: str, norm: str, protocol: str, n: int, p: int, b: int, target: str,
             reuse: bool = True, repeats: int = 1, seed: int = 0, dtype: str = "float64") -> dict[str, Any]:
    net, shapes = network(layout, n, p, b)
    base = nodes_for(shapes, norm, seed, dtype)
    log_f = n * math.log(p) if target == "p^N" else 0.0
    naive = Environments(net, base, norm).partial(n)
    before = log_norm(net, [t.double() for t in base], norm)
    best, res, nodes = math.inf, None, base
    for _ in range(repeats):
        nodes = [t.clone() for t in base]
        t0 = time.perf_counter()
        if protocol == "paper":
            res = normalize_partial(net, nodes, norm, target=math.exp(log_f), tolerance=TOLERANCE, max_iter=MAX_STEPS,
                                    generator=torch.Generator().manual_seed(seed), reuse=reuse)
        else:
            res = normalize_log(net, nodes, norm, log_target=log_f, tolerance=TOLERANCE, verify=False)
        best = min(best, time.perf_counter() - t0)
    after = log_norm(net, [t.double() for t in nodes], norm)  # checked in float64 whatever the dtype
    ok = math.isfinite(after) and math.log(TOLERANCE[0]) <= after - log_f <= math.log(TOLERANCE[1])
    return {
        "sweep": sweep, "dtype": dtype, "layout": layout, "norm": norm, "protocol": protocol + ("" if reuse else "-scratch"),
        "N": n, "p": p, "b": b, "target": target, "log10_F": log_f / math.log(10),
        "naive_finite": math.isfinite(naive), "log10_norm_before": before / math.log(10),
        "log10_norm_after": after / math.log(10), "converged": bool(res.converged and ok),
        "passes": res.passes, "steps": res.steps, "contractions": res.contractions,
        "within_100": bool(res.converged and res.steps <= 100), "time_s": best,
        "reason": res.reason,
    }


def profile(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Passes and steps of the paper protocol (FTNR, F = p^N) per dtype over the paper's N ranges."""
    out = []
    for dtype in DTYPES:
        for name, lo, hi in (("N < 10", 0, 9), ("10 <= N <= 27", 10, 27), ("N > 27", 28, 10 ** 9)):
            sel = [r for r in rows if r["sweep"] == "steps_vs_N" and r["protocol"] == "paper" and r["dtype"] == dtype
                   and r["norm"] == "frobenius" and lo <= r["N"] <= hi]
            if not sel:
                continue
            ok = [r for r in sel if r["converged"]] or sel
            out.append({"dtype": dtype, "N_range": name, "runs": len(sel),
                        "passes_median": statistics.median(r["passes"] for r in ok),
                        "passes_max": max(r["passes"] for r in ok),
                        "steps_median": statistics.median(r["steps"] for r in ok),
                        "steps_max": max(r["steps"] for r in ok), "failed": sum(not r["converged"] for r in sel)})
    return out


def fit_exponent(rows: list[dict[str, Any]], key: str, lo: int, hi: int) -> float | None:
    """Least-squares slope of log(key) against log(N) over lo <= N <= hi (converged runs)."""
    pts = [(math.log(r["N"]), math.log(r[key])) for r in rows
           if lo <= r["N"] <= hi and r["converged"] and r[key] > 0]
    if len(pts) < 3:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def markdown_table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return out


def plots(rows: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(name)

    # the step profile: both counters, both dtypes, FTNR (the paper's), the paper's profile overlaid
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for col, dtype in enumerate(DTYPES):
        for row, counter in enumerate(("passes", "steps")):
            ax = axes[row][col]
            ax.plot([n for n, _ in PAPER_PROFILE], [v for _, v in PAPER_PROFILE], color="black", lw=3, alpha=0.35,
                    label="paper: 0 steps N < 10, 1 up to N ~ 27")
            ax.annotate("paper: then fast growth", xy=(27, 1), xytext=(0.45, 0.75), textcoords="axes fraction",
                        fontsize=8, arrowprops={"arrowstyle": "<-", "color": "grey"})
            for layout in ("tt", "tt-matrix"):
                for p in (4, 16):
                    for b in (4, 16):
                        sel = [r for r in rows if r["sweep"] == "steps_vs_N" and r["dtype"] == dtype
                               and r["layout"] == layout and r["norm"] == "frobenius" and r["p"] == p and r["b"] == b
                               and r["protocol"] == "paper"]
                        if not sel:
                            continue
                        line, = ax.plot([r["N"] for r in sel], [r[counter] for r in sel], lw=1,
                                        marker="o" if layout == "tt" else "s", ms=3, label=f"{layout} p={p} b={b}")
                        failed = [r for r in sel if not r["converged"]]
                        ax.plot([r["N"] for r in failed], [r[counter] for r in failed], "x", ms=8, color=line.get_color())
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylim(bottom=0)
            ax.set_xscale("log")
            ax.set_title(f"{dtype}: {counter}" + (" (~ the paper's steps)" if counter == "passes" else
                                                  " (rescalings in steps 3-5)"), fontsize=10)
            ax.set_ylabel(counter)
            if row == 1:
                ax.set_xlabel("N (nodes), F = p^N, frobenius; x: failed")
    axes[0][0].legend(fontsize=6)
    save(fig, "partial_norm_profile.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, norm in zip(axes, ("frobenius", "lineal")):
        for protocol in ("paper", "paper-scratch", "log"):
            for layout in ("tt", "tt-matrix"):
                for p in (4, 16):
                    sel = [r for r in rows if r["sweep"] == "time_vs_N" and r["layout"] == layout and r["norm"] == norm
                           and r["p"] == p and r["protocol"] == protocol and r["converged"]]
                    if sel:
                        ax.plot([r["N"] for r in sel], [r["time_s"] for r in sel],
                                ls="-" if protocol == "log" else ("--" if protocol == "paper" else ":"),
                                marker="o" if layout == "tt" else "s", label=f"{protocol} {layout} p={p}")
        ax.set(xscale="log", yscale="log", xlabel="N (nodes)", ylabel="seconds", title=f"F = 1, b = 8, {norm}")
        ax.legend(fontsize=6)
    save(fig, "partial_norm_time_vs_N.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (sweep, key) in zip(axes, (("vs_p", "p"), ("vs_b", "b"))):
        for layout in ("tt", "tt-matrix"):
            sel = [r for r in rows if r["sweep"] == sweep and r["layout"] == layout and r["protocol"] == "paper"]
            ax.plot([r[key] for r in sel], [r["steps"] for r in sel], marker="o", label=f"paper {layout}")
        ax.set(xscale="log", xlabel=key, ylabel="normalization steps", title=f"N = {VS_N}, F = 1, frobenius")
        ax.legend(fontsize=8)
    save(fig, "partial_norm_steps_vs_p_b.png")
    return written


def test_partial_norm_scaling(results_dir: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:
        for norm in ("frobenius", "lineal"):
            for layout in ("tt", "tt-matrix"):
                for p in (4, 16):
                    for b in (4, 16):
                        for n in STEPS_N:
                            if 2 * n * math.log10(p) > 300:  # F^2 = p^(2N) beyond float64
                                continue
                            for protocol in ("paper", "log"):
                                rows.append(run_case("steps_vs_N", layout, norm, protocol, n, p, b, "p^N"))
                        for n in STEPS_N32:  # float32: every N, failures included
                            for protocol in ("paper", "log"):
                                rows.append(run_case("steps_vs_N", layout, norm, protocol, n, p, b, "p^N",
                                                     dtype="float32"))
        for norm in ("frobenius", "lineal"):
            for layout in ("tt", "tt-matrix"):
                for p in (4, 16):
                    for n in TIME_N:
                        reps = 3 if n <= 100 else 1
                        for protocol in ("paper", "log"):
                            rows.append(run_case("time_vs_N", layout, norm, protocol, n, p, 8, "1", repeats=reps))
                        if layout == "tt" and norm == "frobenius" and n <= 200:
                            rows.append(run_case("time_vs_N", layout, norm, "paper", n, p, 8, "1", reuse=False,
                                                 repeats=reps))
        for layout in ("tt", "tt-matrix"):
            for p in (2, 4, 8, 16, 32):
                for protocol in ("paper", "log"):
                    rows.append(run_case("vs_p", layout, "frobenius", protocol, VS_N, p, 8, "1"))
            for b in (2, 4, 8, 16, 32, 64):
                for protocol in ("paper", "log"):
                    rows.append(run_case("vs_b", layout, "frobenius", protocol, VS_N, 4, b, "1"))
        for layout in ("tt", "tt-matrix-split"):
            rows.append(run_case("big", layout, "frobenius", "log", 1000, 16, 64, "1"))
    finally:
        torch.set_num_threads(threads)

    fits = []
    for norm in ("frobenius", "lineal"):
        for layout in ("tt", "tt-matrix"):
            for p in (4, 16):
                for protocol in ("paper", "paper-scratch", "log"):
                    sel = [r for r in rows if r["sweep"] == "time_vs_N" and r["norm"] == norm and r["layout"] == layout
                           and r["p"] == p and r["protocol"] == protocol]
                    if sel:
                        fit = {"norm": norm, "layout": layout, "p": p, "b": 8, "protocol": protocol,
                               "N_max": max(r["N"] for r in sel)}
                        for lo, hi in FIT_RANGES:
                            fit[f"time_exponent_{lo}_{hi}"] = fit_exponent(sel, "time_s", lo, hi)
                        fit["contractions_exponent_10_1000"] = fit_exponent(sel, "contractions", 10, 1000)
                        fit["steps_at_N_max"] = max(sel, key=lambda r: r["N"])["steps"]
                        fits.append(fit)
    big = [r for r in rows if r["sweep"] == "big"]
    meta = {
        "command": COMMAND, "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
        "torch": torch.__version__, "threads": 1, "dtype": "float64 (steps_vs_N: also float32)", "node_init": "Gaussian(1, 0.5)",
        "tolerance": TOLERANCE, "max_steps": MAX_STEPS, "wall_s": time.perf_counter() - t_start,
    }
    (results_dir / "partial_norm_scaling.json").write_text(json.dumps({"meta": meta, "fits": fits, "rows": rows}, indent=1))
    with open(results_dir / "partial_norm_scaling.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    images = plots(rows, results_dir)

    md = ["# Partial-norm initialization: steps and time vs N, p, b", "",
          f"`{COMMAND}` ({meta['date']}, {meta['machine']}, torch {meta['torch']}, 1 thread, float64, "
          f"Gaussian(1, 0.5) nodes, tolerance (1e-3 F, 1e3 F), step budget {MAX_STEPS}; benchmark wall time "
          f"{meta['wall_s']:.0f} s). Plots: {', '.join(images)}.", "",
          "*steps*: rescalings of all nodes in the paper's steps 3-5 (0 when the plain norm is finite and one "
          "division finishes); *passes*: returns to step 2 (full norm) after a rescaling; *contractions*: "
          "node-environment contractions (the work); *within_100*: converged within the public code's budget "
          "of 100 steps; *naive_finite*: the plain float64 left-to-right norm is finite. TT-matrix nodes are "
          "(b, p, p, b), except `tt-matrix-split` (b, 4, 4, b).", "",
          "## Log-domain normalizer, N = 1000, p = 16, b = 64 (F = 1)", ""]
    md += markdown_table(big, ["layout", "N", "p", "b", "log10_norm_before", "log10_norm_after", "contractions", "time_s"])
    md += ["", "## Fitted exponents vs N (F = 1, b = 8, converged runs; paper-scratch only up to N = 200)", ""]
    md += markdown_table(fits, ["norm", "layout", "p", "protocol", "N_max", "time_exponent_10_1000",
                                "time_exponent_100_1000", "contractions_exponent_10_1000", "steps_at_N_max"])
    md += ["", "## The paper's step profile: passes and steps by range of N, FTNR, F = p^N", "",
           "The paper counts 0 normalization steps for N < 10, 1 up to N ~ 27, then fast growth; the counter that "
           "resembles its steps is `passes` (returns to the full norm), not `steps` (node rescalings inside the "
           "partial-norm scan). Median (max) over TT and TT-matrix, p in {4, 16}, b in {4, 16}; failed: runs that "
           "did not converge (in float32 mostly because F^2 itself overflows).", ""]
    md += markdown_table(profile(rows), ["dtype", "N_range", "runs", "passes_median", "passes_max", "steps_median",
                                         "steps_max", "failed"])
    md += ["", "## Steps vs N, paper protocol, F = p^N (float64 where F^2 fits; float32 every N)", ""]
    sel = [r for r in rows if r["sweep"] == "steps_vs_N" and r["protocol"] == "paper"]
    md += markdown_table(sel, ["dtype", "norm", "layout", "p", "b", "N", "naive_finite", "passes", "steps",
                               "contractions", "converged", "within_100", "time_s", "reason"])
    md += ["", "## Time vs N, F = 1, b = 8", ""]
    sel = [r for r in rows if r["sweep"] == "time_vs_N"]
    md += markdown_table(sel, ["norm", "layout", "p", "protocol", "N", "naive_finite", "steps", "contractions",
                               "converged", "time_s"])
    md += ["", f"## Steps vs p (b = 8) and b (p = 4), N = {VS_N}, F = 1, frobenius", ""]
    sel = [r for r in rows if r["sweep"] in ("vs_p", "vs_b")]
    md += markdown_table(sel, ["sweep", "layout", "protocol", "p", "b", "naive_finite", "steps", "contractions",
                               "converged", "time_s"])
    (results_dir / "partial_norm_scaling.md").write_text("\n".join(md) + "\n")

    # float32 needs passes and steps where float64 needs none (the paper's profile only shows there)
    paper = {(r["dtype"], r["layout"], r["norm"], r["p"], r["b"], r["N"]): r for r in rows
             if r["sweep"] == "steps_vs_N" and r["protocol"] == "paper"}
    shown = [k for k, r in paper.items() if k[0] == "float32" and r["converged"] and r["passes"] > 0
             and ("float64", *k[1:]) in paper and paper[("float64", *k[1:])]["steps"] == 0]
    assert shown
    # the log-domain normalizer always converges in one pass, whatever N, p, b
    logs = [r for r in rows if r["protocol"] == "log" and r["dtype"] == "float64"]
    assert all(r["converged"] and r["steps"] == 0 for r in logs), [r for r in logs if not r["converged"]][:3]
    assert all(r["converged"] for r in big)
