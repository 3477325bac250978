"""`tunelab dashboard`: optuna-dashboard on a study database, on 127.0.0.1 only, with the way to reach it safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.waiting import wait_for
from tunelab import search, spaces, studies, trainers
from tunelab.spaces import ConfigError
from tunelab.studies import dashboard
from tunelab.studies.cli import main as cli


def square(config):
    return (config["x"] - 0.2) ** 2


@pytest.mark.subprocess
def test_the_dashboard_serves_the_study_on_loopback_and_prints_the_ssh_tunnel(tmp_path):
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = studies.create("dash", url, space=spaces.Space(x=spaces.Float(-1, 1)), trainer=trainers.Objective(square),
                           strategy=search.Random(seed=0))
    study.optimize(trials=3, progress=False)
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "tunelab.studies.cli", "dashboard", "--storage", url,
                                 "--port", "0"], stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: "ssh -N -L" in out.read_text() or proc.poll() is not None, "the dashboard's address")
        text = out.read_text()
        assert proc.poll() is None, text
        line = next(x for x in text.splitlines() if x.startswith("optuna-dashboard: http://127.0.0.1:"))
        address = line.split()[1]
        port = address.split(":")[2].rstrip("/")
        assert "do not expose it on all interfaces" in text and f"-L {port}:127.0.0.1:{port}" in text
        answers = []

        def answered():
            try:
                with urllib.request.urlopen(address + "api/studies", timeout=5) as r:
                    answers.append(json.loads(r.read()))
                return True
            except OSError:
                return proc.poll() is not None

        wait_for(answered, "the dashboard to answer")
        assert answers, out.read_text()
        assert [s["study_name"] for s in answers[0]["study_summaries"]] == ["dash"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_missing_database_or_dashboard_is_a_typed_error_naming_the_fix(tmp_path, monkeypatch, capsys):
    assert cli(["dashboard", "--storage", f"sqlite:///{tmp_path / 'missing.db'}", "--port", "0"]) != 0
    assert "missing.db" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'tunelab\[dashboard\]'"):
        dashboard.serve(f"sqlite:///{tmp_path / 'missing.db'}")
    with pytest.raises(ConfigError, match="--port"):
        monkeypatch.delitem(sys.modules, "optuna_dashboard")
        dashboard.serve(f"sqlite:///{tmp_path / 'missing.db'}", port=70000)
