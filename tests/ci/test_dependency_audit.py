"""The dependency audit of CI (``.ci/audit``): what each pip-audit report means, from canned JSON outputs.

A known vulnerability with a fix fails; a report whose packages could not be audited (no advisory source,
as on machines without one) is said to be no audit at all, never "clean", and does not fail.
"""

import importlib.machinery
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "audit"


def load_audit():
    loader = importlib.machinery.SourceFileLoader("ci_audit", str(SCRIPT))
    spec = importlib.util.spec_from_loader("ci_audit", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def audit():
    return load_audit()


def package(name, version, *vulns):
    return {"name": name, "version": version, "vulns": list(vulns)}


def not_found(name, version):
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})"}


DJANGO_FIXED = {"id": "PYSEC-2025-47", "fix_versions": ["5.2.2", "5.1.10"], "aliases": ["CVE-2025-48432"],
                "description": "Log injection through the request path."}
NO_FIX = {"id": "GHSA-xxxx-yyyy-zzzz", "fix_versions": [], "aliases": [], "description": "Not fixed yet."}

# What pip-audit 2.x prints with --format json on these machines: every package skipped.
NO_ADVISORY_SOURCE = {"dependencies": [not_found("django", "5.2.19"), not_found("celery", "5.7.0"),
                                       not_found("weasyprint", "70.0")], "fixes": []}


def text(verdict) -> str:
    return "\n".join(verdict.lines)


def test_a_vulnerability_with_a_fix_fails(audit):
    report = {"dependencies": [package("django", "5.2.1", DJANGO_FIXED), package("celery", "5.7.0")], "fixes": []}
    verdict = audit.decide(report)
    assert verdict.exit_code == 1 and not verdict.clean
    assert "VULNERABLE: django 5.2.1: PYSEC-2025-47 (CVE-2025-48432); fixed in 5.2.2, 5.1.10" in text(verdict)
    assert "FAILED" in text(verdict)


def test_a_vulnerability_with_a_fix_fails_even_when_other_packages_were_skipped(audit):
    report = {"dependencies": [package("django", "5.2.1", DJANGO_FIXED), not_found("celery", "5.7.0")], "fixes": []}
    assert audit.decide(report).exit_code == 1


def test_no_advisory_source_is_no_audit_and_does_not_fail(audit):
    verdict = audit.decide(NO_ADVISORY_SOURCE)
    assert verdict.exit_code == 0 and not verdict.clean
    assert "could not run" in text(verdict)
    assert "NOT known to be free of vulnerabilities" in text(verdict)
    assert "3 of 3 packages could not be audited" in text(verdict)
    assert "passed" not in text(verdict) and "no known vulnerabilit" not in text(verdict).lower()


def test_some_packages_skipped_is_incomplete_not_clean(audit):
    report = {"dependencies": [package("django", "5.2.19"), not_found("celery", "5.7.0")], "fixes": []}
    verdict = audit.decide(report)
    assert verdict.exit_code == 0 and not verdict.clean
    assert "1 of 2 packages could not be audited" in text(verdict)
    assert "NOT known to be clean" in text(verdict)


def test_every_package_audited_without_vulnerabilities_is_clean(audit):
    report = {"dependencies": [package("django", "5.2.19"), package("celery", "5.7.0")], "fixes": []}
    verdict = audit.decide(report)
    assert verdict.exit_code == 0 and verdict.clean
    assert "no known vulnerability with a fix in the 2 pinned packages" in text(verdict)


def test_a_vulnerability_without_a_fix_is_listed_and_does_not_fail(audit):
    report = {"dependencies": [package("pyhanko", "0.38.0", NO_FIX), package("django", "5.2.19")], "fixes": []}
    verdict = audit.decide(report)
    assert verdict.exit_code == 0 and not verdict.clean
    assert "known, no fix yet: pyhanko 0.38.0: GHSA-xxxx-yyyy-zzzz" in text(verdict)


@pytest.mark.parametrize("report", [None, [], {}, {"dependencies": "?"}])
def test_no_report_is_no_audit_and_does_not_fail(audit, report):
    verdict = audit.decide(report)
    assert verdict.exit_code == 0 and not verdict.clean
    assert "could not run" in text(verdict)


def fake_run(report_text=None, *, fails=None):
    """A stand-in for subprocess.run: pip freeze prints a pinned set; pip-audit writes ``report_text``."""
    calls = []

    def run(args, **kwargs):
        calls.append(args)
        if fails is not None:
            raise fails
        if args[1:3] == ["-m", "pip"]:
            return subprocess.CompletedProcess(args, 0, stdout="Django==5.2.1\ncelery==5.7.0\n", stderr="")
        assert "--no-deps" in args and "--disable-pip" in args and args[args.index("--format") + 1] == "json"
        pinned = Path(args[args.index("--requirement") + 1]).read_text()
        assert pinned == "Django==5.2.1\ncelery==5.7.0\n"
        if report_text is not None:
            Path(args[args.index("--output") + 1]).write_text(report_text)
        return subprocess.CompletedProcess(args, 1 if report_text and "PYSEC" in report_text else 0, stdout="",
                                           stderr="ConnectionError: advisory source unreachable\n")

    run.calls = calls
    return run


def test_the_audit_runs_pip_audit_on_the_frozen_set_and_reads_its_report(audit):
    vulnerable = json.dumps({"dependencies": [package("django", "5.2.1", DJANGO_FIXED)], "fixes": []})
    assert audit.audit("python", run=fake_run(vulnerable)).exit_code == 1
    assert audit.audit("python", run=fake_run(json.dumps(NO_ADVISORY_SOURCE))).exit_code == 0


@pytest.mark.parametrize(("report_text", "fails"), [
    (None, None),
    ("Traceback (most recent call last): ConnectionError", None),
    (None, subprocess.TimeoutExpired(["pip-audit"], 600)),
    (None, FileNotFoundError("no such interpreter")),
])
def test_pip_audit_that_cannot_run_is_said_so_and_does_not_fail(audit, report_text, fails):
    verdict = audit.audit("python", run=fake_run(report_text, fails=fails))
    assert verdict.exit_code == 0 and not verdict.clean
    assert "could not run" in text(verdict)
    if fails is None:
        assert "ConnectionError: advisory source unreachable" in text(verdict)


def test_ci_runs_the_audit_and_installs_pip_audit():
    run = (ROOT / ".ci" / "run").read_text()
    assert '"$PYTHON" .ci/audit' in run
    assert any(dep.startswith("pip-audit") for dep in _test_dependencies())


def _test_dependencies():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
