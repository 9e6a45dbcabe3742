"""Published numbers (results/reference/*.csv) beside measured ones.

Each reference row names a paper, model, dataset, method and setting, and the numbers the paper
published; `match` (or a `key=value` setting) says which runs it speaks of, as conditions on a
run's resolved config. Partial-norm rows (normalization steps over ranges of N) are compared
with the partial-norm benchmark's table instead of runs: its `passes` (returns to the full norm,
what the paper counts as steps, not its inner-loop `steps`) in float32, the public code's dtype.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tnbench.functional.counting import RULES, STORED
from tnbench.reporting import plots
from tnbench.reporting.console import warn
from tnbench.reporting.records import get_path


def load_reference(ref_dir: Path) -> pd.DataFrame:
    """Every row of every results/reference/*.csv, as text, with its file name."""
    frames = []
    for path in sorted(Path(ref_dir).glob("*.csv")):
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            warn(f"skipped unreadable reference table {path}: {e}")
            continue
        df["file"] = path.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True).fillna("") if frames else pd.DataFrame()


# The schema of a reference CSV: the columns every file has, the columns that hold numbers (or
# nothing), and `count_rule`, which names how a compression figure counts (tnbench.functional.
# counting; `n/a` on rows without one).
REQUIRED_COLUMNS = ("paper", "arxiv", "source", "count_rule")
RUN_COLUMNS = ("model", "dataset", "method", "setting")  # files compared with runs
NUMERIC_COLUMNS = ("accuracy", "accuracy_std", "compression_rate", "compression_rate_stored", "compression_ratio",
                   "parameters", "encoded_parameters", "norm_loss")
SIZE_COLUMNS = ("compression_rate", "compression_rate_stored", "compression_ratio", "parameters")
NO_RULE = "n/a"


def check_reference(df: pd.DataFrame, name: str) -> list[str]:
    """What is wrong with one reference table (read as text): one line per problem."""
    problems = [f"{name}: no column {c}" for c in REQUIRED_COLUMNS if c not in df.columns]
    if "normalization_steps" not in df.columns:
        problems += [f"{name}: no column {c}" for c in RUN_COLUMNS if c not in df.columns]
    if problems:
        return problems
    for i, r in df.iterrows():
        where = f"{name} row {i + 2}"
        if not re.fullmatch(r"\d{4}\.\d{4,5}", str(r["arxiv"])):
            problems.append(f"{where}: arxiv {r['arxiv']!r} is not an arXiv id")
        for c in NUMERIC_COLUMNS:
            if c in df.columns and str(r[c]).strip() and _number(r[c]) is None:
                problems.append(f"{where}: {c} {r[c]!r} is not a number")
        if "ranks" in df.columns and str(r["ranks"]).strip() and \
                not re.fullmatch(r"\d+(;\d+)*", str(r["ranks"]).strip()):
            problems.append(f"{where}: ranks {r['ranks']!r} are not integers joined by ';'")
        rule = str(r["count_rule"]).strip()
        sized = any(c in df.columns and str(r[c]).strip() for c in SIZE_COLUMNS)
        if rule not in (*RULES, NO_RULE) or (sized and rule not in RULES):
            problems.append(f"{where}: count_rule {rule!r} must be one of {', '.join(RULES)}"
                            + ("" if sized else f" or {NO_RULE}"))
        if not str(r["source"]).strip():
            problems.append(f"{where}: no source")
    return problems


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _values(cell: Any) -> list[str]:
    return [v.strip() for v in str(cell or "").split(";") if v.strip()]


def published_points(ref: pd.DataFrame) -> pd.DataFrame:
    """Published accuracies with a compression number, one row per model/dataset they name."""
    cols = ["paper", "model", "dataset", "method", "setting", "accuracy", "compression_ratio", "compression_rate"]
    rows = []
    if not ref.empty and "accuracy" in ref:
        for _, r in ref.iterrows():
            if _number(r.get("accuracy")) is None:
                continue
            for model in _values(r.get("model")):
                for dataset in _values(r.get("dataset")):
                    rows.append({c: r.get(c, "") for c in cols} | {"model": model, "dataset": dataset})
    out = pd.DataFrame(rows, columns=cols)
    for c in ("accuracy", "compression_ratio", "compression_rate"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


CONDITION = re.compile(r"^([A-Za-z_][\w.]*)\s*(<=|>=|!=|=|<|>)\s*(.+)$")


def parse_conditions(text: str) -> list[tuple[str, str, Any]]:
    """`method.tau=0.09 method.layers=[a,b]` -> [(path, op, value)]; values parsed as YAML."""
    out = []
    for token in re.findall(r"\S+=\[[^\]]*\]|\S+", text or ""):
        m = CONDITION.match(token)
        if not m:
            raise ValueError(f"cannot read the condition {token!r}")
        key, op, raw = m.groups()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out.append((key, op, value))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and \
            all(_same(x, y) for x, y in zip(a, b))
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(na, nb, rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def holds(record: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
    """Each condition on the record's resolved config (`method.tau`), or on the record itself."""
    for key, op, want in conditions:
        have = get_path(record.get("config"), key)
        if have is None:
            have = get_path(record, key)
        if op in ("=", "!="):
            if _same(have, want) != (op == "="):
                return False
            continue
        x, y = _number(have), _number(want)
        if x is None or y is None or not {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]:
            return False
    return True


# (published column, measured column, how runs are combined)
QUANTITIES: list[tuple[str, str, str]] = [
    ("accuracy", "acc_reported", "mean"),
    ("compression_rate", "compression_rate", "mean"),
    ("compression_rate_stored", "compression_rate", "mean"),
    ("compression_ratio", "compression_ratio_layers", "mean"),
    ("parameters", "params_compressed", "mean"),
    ("ranks", "ranks", "first"),
    ("norm_loss", "norm_loss_mean", "max"),
    ("accuracy_drop", "accuracy_drop", "mean"),
    ("recovery_epochs", "recovery_epochs", "median"),
]
QUANTITY_NOTES = {
    "accuracy": "measured: acc_selected (the selected model's; the last epoch's unless pipeline.select)",
    "compression_rate_stored": "published ranks counted our way (rule stored); measured: compression_rate",
    "compression_ratio": "measured: compression_ratio_layers (dense / compressed weights of the compressed layers)",
    "parameters": "measured: params_compressed (all parameters incl. biases; the paper may count weights only)",
    "norm_loss": "measured: largest mean norm loss among the matching runs",
    "accuracy_drop": "measured: acc_pretrain - acc_compressed (right after truncation)",
    "recovery_epochs": "measured: median over the runs that recovered",
}
# Under a paper's own counting rule (the row's count_rule), a size is compared with the records'
# count under that rule, where they have one (tnbench.functional.counting).
PAPER_RULE_COLUMNS = {"compression_rate": "compression_rate_paper", "parameters": "params_paper"}
DENSE_RULE_COLUMNS = {"compression_rate": "compression_rate", "parameters": "weights_dense"}
COMPARISON_COLUMNS = ["paper", "arxiv", "model", "dataset", "method", "setting", "quantity", "published", "measured",
                      "measured_on", "difference", "runs", "status", "note", "source", "count_rule"]
# The data this machine has in place of a paper's: a published row with no run on its own
# dataset is compared with runs of the same model, method and setting on the stand-in, marked
# `measured (stand-in)` with `measured_on` naming it (tnbench.studies.reproduce runs them).
STAND_INS = {"mnist": "fashion_mnist", "cifar10": "fashion_mnist", "cifar100": "fashion_mnist"}
DENSE_SETTINGS = {"dense", "full"}


def _combine(values: pd.Series, how: str) -> Any:
    values = values.dropna()
    if values.empty:
        return None
    if how == "first":
        return values.mode().iloc[0] if not values.mode().empty else values.iloc[0]
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    return float({"mean": v.mean, "max": v.max, "median": v.median}[how]())


def _matching_runs(row: pd.Series, ok: pd.DataFrame, records: list[dict[str, Any]]) -> tuple[pd.DataFrame, str]:
    """The ok runs a published row speaks of, and a note on how they were chosen."""
    sel = ok
    models, datasets = _values(row.get("model")), _values(row.get("dataset"))
    if models:
        sel = sel[sel["model"].isin(models)]
    if datasets:
        sel = sel[sel["dataset"].isin(datasets)]
    method, setting = str(row.get("method", "")).strip(), str(row.get("setting", "")).strip()
    note = ""
    if method == "none" and setting.lower() in DENSE_SETTINGS:
        dense = sel[sel["method"] == "none"]
        if dense.empty:  # the dense model every compressed run starts from
            pretrained = sel[sel["config_pretrain_epochs"].fillna(0) > 0]
            dense = pretrained.drop_duplicates(["dataset", "model", "seed", "acc_pretrain"]).copy()
            dense["acc_retrained"] = dense["acc_reported"] = dense["acc_pretrain"]
            dense["compression_ratio_layers"] = 1.0
            dense["compression_rate"] = 0.0
            note = "no method=none run: acc_pretrain of the compressed runs (their dense model)"
        return dense, note
    if method:
        sel = sel[sel["method"] == method]
    text = str(row.get("match", "")).strip()
    if not text and re.fullmatch(r"(\w+=\S+\s*)+", setting):
        text = " ".join(f"method.{t}" for t in setting.split())  # e.g. the DLRT table's tau=0.09
    if text:
        conditions = parse_conditions(text)
        sel = sel[sel["_i"].map(lambda i: holds(records[i], conditions))]
    if "best reported" in setting.lower() and not sel.empty:
        sel, note = best_reported(row, sel)
    return sel, note


def best_reported(row: pd.Series, sel: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A paper's "up to X% compression at equal accuracy": among the runs whose accuracy is within
    their recovery tolerance of their own dense model's (`gap_to_dense`, tnbench.reporting.
    comparison.dense_reference), the one compressing most; judged against dense accuracy, never
    against recovery epochs (meaningless for runs from scratch without their dense twin)."""
    col = "compression_rate" if _number(row.get("compression_rate")) is not None else "compression_ratio_layers"
    tol = sel["config_recovery_tolerance"].fillna(0.5)
    near = sel[sel["gap_to_dense"] >= -tol]
    if not near.empty:
        return near.loc[[near[col].idxmax()]], f"the run with the largest {col} within its recovery tolerance of " \
                                               f"its dense model's accuracy"
    known = sel[sel["gap_to_dense"].notna()]
    if not known.empty:
        best = known.loc[[known["gap_to_dense"].idxmax()]]
        return best, f"no run within its recovery tolerance of its dense model: the closest one " \
                     f"({float(best['gap_to_dense'].iloc[0]):+.2f} points)"
    return sel.loc[[sel[col].idxmax()]], f"no dense accuracy for these runs: the run with the largest {col}"


def _fmt_value(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def compare_with_stand_in(row: pd.Series, ok: pd.DataFrame, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`compare_runs` on the row's own dataset; where nothing ran there, on its stand-in."""
    rows = compare_runs(row, ok, records)
    own = _values(row.get("dataset"))
    stand_in = sorted({STAND_INS[d] for d in own if d in STAND_INS} - set(own))
    if not stand_in or any(r.get("status") != "not run" for r in rows):
        for r in rows:
            r.setdefault("measured_on", ";".join(own))
        return rows
    alt = row.copy()
    alt["dataset"] = ";".join(stand_in)
    stand_rows = compare_runs(alt, ok, records)
    if all(r.get("status") == "not run" for r in stand_rows):
        return [r | {"measured_on": ""} for r in rows]
    for r in stand_rows:
        r["dataset"] = row.get("dataset", "")
        r["measured_on"] = alt["dataset"]
        if str(r.get("status", "")).startswith("measured"):
            r["status"] = "measured (stand-in)"
            r["note"] = "; ".join(n for n in (f"{alt['dataset']} stand-in for {row.get('dataset')}", r.get("note", "")) if n)
    return stand_rows


def compare_runs(row: pd.Series, ok: pd.DataFrame, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {c: row.get(c, "") for c in ("paper", "arxiv", "model", "dataset", "method", "setting", "source",
                                        "count_rule")}
    quantities = [(q, m, how) for q, m, how in QUANTITIES if str(row.get(q, "")).strip()]
    if not quantities:
        return [base | {"quantity": "-", "status": "no published value", "note": "settings only"}]
    try:
        sel, how_chosen = _matching_runs(row, ok, records)
    except ValueError as e:
        return [base | {"quantity": q, "published": row.get(q), "status": "bad match", "note": str(e)} for q, _, _ in quantities]
    out = []
    rule = str(row.get("count_rule", "")).strip()
    for q, col, how in quantities:
        published = row.get(q)
        rule_note = ""
        dense_row = str(row.get("method", "")).strip() == "none"
        if rule in RULES and rule != STORED and q in PAPER_RULE_COLUMNS:
            run_rules = set(sel["count_rule"].dropna()) if "count_rule" in sel else set()
            if dense_row:  # a dense row's count is every weight (0% either way)
                col = DENSE_RULE_COLUMNS[q]
                rule_note = f"counted by the paper's rule ({rule}): measured {col}"
            elif sel.empty or rule in run_rules:
                col = PAPER_RULE_COLUMNS[q]
                rule_note = f"counted by the paper's rule ({rule}): measured {col}"
            else:  # e.g. TDLRT's 95.3%, DLRT's figure, beside Tucker runs that have no such count
                rule_note = (f"published by rule {rule}; these runs have no {rule} count (theirs: "
                             f"{', '.join(sorted(run_rules)) or 'none'}): measured {col}, counted as stored")
        entry = base | {"quantity": q, "published": _number(published) if _number(published) is not None else published,
                        "runs": len(sel)}
        measured = _combine(sel[col], how) if not sel.empty and col in sel else None
        notes = [n for n in (how_chosen, rule_note or QUANTITY_NOTES.get(q, "")) if n]
        if sel.empty:
            entry |= {"status": "not run", "note": "no ok run matches"}
        elif measured is None:
            entry |= {"status": "not measured", "note": "; ".join(notes + [f"the matching runs have no {col}"])}
        else:
            entry["measured"] = _fmt_value(measured)
            pub = _number(published)
            if pub is not None and isinstance(measured, float):
                entry["difference"] = round(measured - pub, 4)
                entry["status"] = "measured"
            else:
                entry["status"] = "measured (published value not a number)" if pub is None else "measured"
            if q == "accuracy" and len(sel) > 1:
                notes.append(f"std over runs {sel[col].std(ddof=1):.3g}")
            entry["note"] = "; ".join(notes)
        out.append(entry)
    return out


def n_range(text: str) -> tuple[float, float, bool, bool]:
    """`N<10`, `10<=N<=27`, `N>27` -> (low, high, low inclusive, high inclusive)."""
    low, high, low_in, high_in = -math.inf, math.inf, False, False
    for a, op in re.findall(r"(\d+)\s*(<=|<)\s*N", text):
        low, low_in = float(a), op == "<="
    for op, b in re.findall(r"N\s*(<=|<|>=|>)\s*(\d+)", text):
        if op in ("<", "<="):
            high, high_in = float(b), op == "<="
        else:
            low, low_in = float(b), op == ">="
    return low, high, low_in, high_in


def compare_bench(row: pd.Series, bench: pd.DataFrame | None, bench_source: str) -> list[dict[str, Any]]:
    base = {c: row.get(c, "") for c in ("paper", "arxiv", "model", "dataset", "method", "setting", "source")}
    base["model"] = base["model"] or row.get("network", "")
    base["setting"] = base["setting"] or str(row.get("N_range", ""))
    published = row.get("normalization_steps", "")
    entry = base | {"quantity": "normalization_steps", "published": _number(published) if _number(published) is not None else published}
    if bench is None or bench.empty:
        return [entry | {"status": "not run", "note": f"no benchmark results ({bench_source})"}]
    ncol, scol = plots.first_column(bench, plots.N_COLUMNS), plots.first_column(bench, plots.STEP_COLUMNS)
    if ncol is None or scol is None:
        return [entry | {"status": "not measured", "note": f"{bench_source} has no N / steps columns"}]
    bench, conditions = paper_conditions(row, plots.against_n(bench, scol))
    low, high, low_in, high_in = n_range(str(row.get("N_range", "")))
    n = pd.to_numeric(bench[ncol], errors="coerce")
    inside = ((n > low) | (low_in & (n == low))) & ((n < high) | (high_in & (n == high)))
    steps = pd.to_numeric(bench.loc[inside, scol], errors="coerce").dropna()
    if steps.empty:
        return [entry | {"status": "not run", "note": f"{bench_source}: no N in {row.get('N_range')}"}]
    measured = float(steps.median())
    entry |= {"measured": measured, "runs": len(steps), "status": "measured",
              "note": f"median over {len(steps)} points (min {steps.min():g}, max {steps.max():g}) with "
                      f"{', '.join(conditions) or 'all rows'}; {bench_source}"}
    if _number(published) is not None:
        entry["difference"] = round(measured - float(published), 4)
    else:
        entry["status"] = "measured (published value not a number)"
    return [entry]


def _norm_name(v: Any) -> str:
    return str(v).strip().lower().replace("_", "-")


PAPER_DTYPE = "float32"  # the partial-norm paper's public code computes in float32


def paper_conditions(row: pd.Series, bench: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The benchmark rows measured as the paper measured: its networks, norm and target norm,
    where the benchmark compares protocols the paper's own (`protocol == paper`), and where it
    compares dtypes the public code's float32."""
    used = []
    for ref_col, bench_cols in (("network", ("layout", "network")), ("norm", ("norm",)),
                                ("target_norm", ("target", "target_norm"))):
        want = {_norm_name(v) for v in _values(row.get(ref_col))}
        col = next((c for c in bench_cols if c in bench.columns), None)
        if want and col is not None:
            keep = bench[col].map(_norm_name).isin(want)
            if keep.any():
                bench = bench[keep]
                used.append(f"{col} in {sorted(want)}")
    if "protocol" in bench.columns and (bench["protocol"].astype(str) == "paper").any():
        bench = bench[bench["protocol"].astype(str) == "paper"]
        used.append("protocol = paper")
    if "dtype" in bench.columns and (bench["dtype"].astype(str) == PAPER_DTYPE).any():
        bench = bench[bench["dtype"].astype(str) == PAPER_DTYPE]
        used.append(f"dtype = {PAPER_DTYPE}")
    return bench, used


def reference_comparison(ref: pd.DataFrame, runs: pd.DataFrame, records: list[dict[str, Any]],
                         bench: pd.DataFrame | None, bench_source: str) -> pd.DataFrame:
    ok = runs[runs["status"] == "ok"]
    rows: list[dict[str, Any]] = []
    for _, row in ref.iterrows():
        if str(row.get("normalization_steps", "")).strip() or str(row.get("N_range", "")).strip():
            rows += compare_bench(row, bench, bench_source)
        else:
            rows += compare_with_stand_in(row, ok, records)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def load_bench(bench_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """results/bench/partial_norm_*.csv|json as one table (JSON: a list of rows, or an object
    holding one under rows/results/records/data), and where it came from."""
    csvs = sorted(Path(bench_dir).glob("partial_norm_*.csv"))
    # a JSON beside a CSV of the same name holds the same rows
    files = csvs + [p for p in sorted(Path(bench_dir).glob("partial_norm_*.json")) if p.with_suffix(".csv") not in csvs]
    frames, used = [], []
    for path in files:
        try:
            if path.suffix == ".csv":
                df = pd.read_csv(path)
            else:
                data = json.loads(path.read_text())
                if isinstance(data, dict):
                    data = next((data[k] for k in ("rows", "results", "records", "data") if isinstance(data.get(k), list)), data)
                df = pd.json_normalize(data) if isinstance(data, (list, dict)) else pd.DataFrame()
        except (OSError, ValueError) as e:
            warn(f"skipped unreadable benchmark file {path}: {e}")
            continue
        if not df.empty:
            df["file"] = path.name
            frames.append(df)
            used.append(path.name)
    if not frames:
        return None, f"no {Path(bench_dir) / 'partial_norm_*.csv|json'}"
    return pd.concat(frames, ignore_index=True), ", ".join(used)
