"""The progress lines (tnbench.pipeline.progress): every stretch of a run has one, printed once,
finished, off a terminal; none with trainer.progress=false; nothing on stderr."""
from __future__ import annotations

from tests.conftest import run_in_process
from tnbench.pipeline.progress import status_line
from tnbench.reporting.console import console


def test_status_line_prints_its_finished_line_once_off_a_terminal():
    with console.capture() as out:
        with status_line("measure", 2) as line:
            line.show("dense model: timing batch 1", "0/2", 0)
            line.show("dense model: timing batch 8", "1/2", 1)
            line.finish("dense model: 1.00 ms at batch 1", "2/2")
    lines = [x for x in out.get().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("measure") and "2/2" in lines[0]
    assert "dense model: 1.00 ms at batch 1" in lines[0] and "timing" not in lines[0]
    with console.capture() as off:
        with status_line("measure", 2, enabled=False) as line:
            line.show("dense model: timing batch 1", "0/2", 0)
            line.finish("done")
    assert off.get() == ""


def test_a_run_shows_measurements_and_the_budget_search_on_stdout(tmp_path, capsys):
    rec = run_in_process(tmp_path, "logger=none", "method=svd", "budget.ratio=2", "trainer.progress=true",
                         "trainer.measure_speed=true", name="shown")
    out, err = capsys.readouterr()
    assert rec["status"] == "ok"
    lines = out.splitlines()

    def line(start: str, *parts: str) -> str:
        found = [x for x in lines if x.startswith(start) and all(p in x for p in parts)]
        assert len(found) == 1, (start, parts, out)
        return found[0]

    line("measure", "3/3", "dense model:", "MFLOPs", "ms at batch 1", "/s at batch 256")
    line("budget", "settings tried", f"rank={rec['budget_knob']['rank']} gives", "(asked 2x)")
    line("compress", "layers")
    line("measure", "1/1", "compressed model:", "MFLOPs")
    line("measure", "2/2", "compressed model:", "ms at batch 1")
    order = [i for i, x in enumerate(lines) if x.startswith(("measure", "budget", "compress "))]
    assert [lines[i].split()[0] for i in order] == ["measure", "budget", "compress", "measure", "measure"]
    assert "measure" not in err and "budget" not in err and "settings tried" not in err

    rec = run_in_process(tmp_path, "logger=none", "method=svd", "budget.ratio=2", "trainer.progress=false",
                         "trainer.measure_speed=true", name="quiet")
    out, err = capsys.readouterr()
    assert rec["status"] == "ok" and "latency_dense_ms" in rec and "budget_knob" in rec
    assert not [x for x in out.splitlines() if x.startswith(("measure", "budget", "compress "))]
