"""Progress bar on a terminal (not off one), JSON logs, EMF metrics, source hooks."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

from aep_extract import Extractor, HttpAepSource, LocalSink, SQLiteCheckpointStore
from aep_extract.cli import main
from aep_extract.hooks import CallbackHooks
from aep_extract.schedulers import ThreadPoolScheduler
from aep_extract.testing import FaultPlan, FaultRule

from .helpers import DATASET, END, START, run_args

CLI = [sys.executable, "-m", "aep_extract.cli"]


def run_on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with stderr on a pseudo-terminal; its exit code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:  # keep reading, so a full pty buffer never blocks the child
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            timeout=120,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_demo_on_a_terminal_draws_a_progress_bar(tmp_path):
    code, tty = run_on_a_terminal([*CLI, "-q", "demo", "--dir", str(tmp_path)])
    assert code == 0, tty
    assert DATASET in tty  # the bar's label
    assert "34/34 files" in tty
    assert "100%" in tty
    assert "\r" in tty  # redrawn in place
    assert "█" in tty


def cli_run(paths_env, tmp_path, *extra: str) -> list[str]:
    return [
        *extra,
        *run_args(str(tmp_path / "out"), f"sqlite:///{tmp_path / 'state.db'}"),
    ]


def test_json_logs_without_a_terminal_and_no_bar(fake_aep_env, tmp_path):
    proc = subprocess.run(
        [*CLI, *cli_run(fake_aep_env, tmp_path, "-v", "--log-format", "json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **fake_aep_env},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "copied 34 files" in proc.stdout
    lines = proc.stderr.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    unit_entries = [e for e in entries if e["message"].startswith("unit ")]
    assert len(unit_entries) >= 18  # at least claimed and completed, per unit
    for entry in unit_entries:
        assert entry["dataset"] == DATASET
        assert entry["batch"] in entry["unit"]
        assert entry["logger"] == "aep_extract._engine"
    assert sum(" completed, " in e["message"] for e in unit_entries) == 9
    assert "B/s" not in proc.stderr  # no bar
    assert "%|" not in proc.stderr
    assert fake_aep_env["AEP_CLIENT_SECRET"] not in proc.stderr


def test_run_with_emf_metrics_prints_one_metric_line(fake_aep_env, tmp_path, capsys):
    assert main([*cli_run(fake_aep_env, tmp_path), "--metrics", "emf"]) == 0
    out = capsys.readouterr().out.splitlines()
    emf = json.loads(out[-1])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "aep_extract"
    assert emf["DatasetId"] == DATASET
    assert emf["FilesCopied"] == 34
    assert emf["UnitsWaiting"] == 1  # the demo's loading batch


def test_source_reports_throttles_and_retries_to_hooks(fake_aep, tmp_path):
    fake_aep.set_faults(
        FaultPlan(
            rules=[
                FaultRule(
                    "429",
                    max_faults=3,
                    retry_after=0,
                    routes="catalog+listing+download",
                )
            ],
            seed=1,
        )
    )
    throttles: list[object] = []
    retries: list[tuple[str, float]] = []
    hooks = CallbackHooks(
        throttled=lambda **kw: throttles.append(kw["retry_after"]),
        retry=lambda **kw: retries.append((kw["reason"], kw["wait"])),
    )
    source = HttpAepSource.from_env(fake_aep.env())
    with Extractor(
        source,
        store=SQLiteCheckpointStore(tmp_path / "state.db"),
        sink=LocalSink(tmp_path / "out"),
        scheduler=ThreadPoolScheduler(2),
        hooks=hooks,
    ) as extractor:
        report = extractor.run(DATASET, START, END, progress=False)
    source.close()
    assert report.ok
    assert throttles == [0.0, 0.0, 0.0]
    assert report.throttled == 3
    assert len(retries) == report.retries >= 3
    assert all("ThrottledError" in reason for reason, _ in retries)
    assert all(wait == 0.0 for _, wait in retries)
