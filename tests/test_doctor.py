"""`listrank doctor`: each check in its own process; a crash, an error or a hang is a failed row with its fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from listrank import doctor
from listrank.cli import app


def test_a_check_killed_by_sigill_is_a_failed_row_with_the_rebuild_fix():
    check = doctor.Check("crash", "dies like a native build on the wrong CPU",
                         "import os, signal\nos.kill(os.getpid(), signal.SIGILL)", fix="generic", on_signal="rebuild")
    result = doctor.run_check(check)
    assert not result.ok and result.returncode == -4
    assert "killed by SIGILL" in result.detail and "another CPU" in result.detail
    assert result.fix == "rebuild"


def test_an_exception_reports_its_last_line_and_the_fix():
    check = doctor.Check("err", "raises", "import no_such_module_for_doctor_test", fix="pip install it")
    result = doctor.run_check(check)
    assert not result.ok and result.returncode == 1
    assert "no_such_module_for_doctor_test" in result.detail and "Traceback" not in result.detail
    assert result.fix == "pip install it"


def test_a_hang_is_cut_off_by_the_timeout():
    result = doctor.run_check(doctor.Check("hang", "sleeps", "import time\ntime.sleep(60)", fix="f"), timeout=2)
    assert not result.ok and result.returncode is None and "within 2 s" in result.detail


def test_success_reports_the_checks_own_line():
    result = doctor.run_check(doctor.Check("fine", "prints", "print('noise')\nprint('all good 42')", fix="f"))
    assert result.ok and result.detail == "all good 42" and result.fix == ""


def test_cli_exits_non_zero_and_prints_the_fix_when_a_required_check_fails(monkeypatch, tmp_path):
    checks = [doctor.Check("good", "ok", "print('yes')", fix="-"),
              doctor.Check("bad", "fails", "raise SystemExit('broken thing')", fix="do the fix"),
              doctor.Check("extra", "optional", "raise SystemExit('absent')", fix="optional fix", required=False)]
    monkeypatch.setattr(doctor, "CHECKS", checks)
    result = CliRunner().invoke(app, ["doctor", "--json", str(tmp_path / "d.json")])
    assert result.exit_code == 1, result.output
    assert "do the fix" in result.output and "broken thing" in result.output
    assert "1 required component(s) failed: bad" in result.output
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["ok"] is False and [c["ok"] for c in report["checks"]] == [True, False, False]
    assert report["machine"]["cores_usable"] >= 1


def test_cli_optional_failure_alone_still_passes(monkeypatch):
    monkeypatch.setattr(doctor, "CHECKS", [doctor.Check("extra", "optional", "raise SystemExit(1)", fix="x", required=False)])
    assert CliRunner().invoke(app, ["doctor"]).exit_code == 0


def test_unknown_check_name_is_a_one_line_error():
    result = CliRunner().invoke(app, ["doctor", "--check", "nope"])
    assert result.exit_code == 2 and "unknown check nope" in result.output


def test_every_real_component_works_here(tmp_path):
    """The real thing, as `make setup` runs it: llama.cpp (default threads), torch bf16, encoder, JVM, faiss, trec_eval."""
    out = tmp_path / "doctor.json"
    proc = subprocess.run([sys.executable, "-m", "listrank", "doctor", "--json", str(out)], capture_output=True,
                          text=True, timeout=900)
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = {c["name"]: c["detail"] for c in report["checks"] if c["required"] and not c["ok"]}
    assert not failed and proc.returncode == 0, failed
    names = [c["name"] for c in report["checks"]]
    assert names[:6] == ["llama.cpp", "torch bf16", "encoder", "pyserini JVM", "faiss", "pytrec_eval"]


def test_installed_llama_cpp_is_the_portable_build():
    """make setup builds ggml without -march=native: no AVX-512 and no AMX kernels (issue 9)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    info = llama_cpp.llama_print_system_info().decode()
    enabled = {f.split("=")[0].strip() for f in info.split("|") if f.strip().endswith("= 1")}
    assert not enabled & {"AVX512", "AMX_INT8", "AMX_BF16", "AMX_TILE"}, info
    assert "AVX2" in enabled, info
