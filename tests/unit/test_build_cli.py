"""`strata build` command line: help, usage errors, registration in `strata --help`."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.cli import main


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("strata build SPEC.yaml [OPTIONS...]\n")
    for option in ("--output=DIR", "--json", "--source-date-epoch=N", "--keep-staging"):
        assert option in out


def test_listed_in_strata_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "  build SPEC.yaml [-o DIR]" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["build"], "error: strata build: a spec file is required"),
    (["build", "x.yaml", "--source-date-epoch=soon"],
     "error: strata build: argument --source-date-epoch: not a number of seconds"),
    (["build", "x.yaml", "--json=yaml"], "error: strata build: argument --json: Unknown"),
    (["build", "x.yaml", "--bogus"], "error: strata build: unrecognized arguments: --bogus"),
])
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_LOG_LEVEL", "debug")  # "error: " prefixes, as log.py writes them
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith(message)


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "out")]) == 1
    assert f"{tmp_path / 'none.yaml'}: spec file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
