"""`changeseg serve` argument handling (the running server is tested in tests/service)."""

from __future__ import annotations

import pytest

from changeseg.cli import serve
from changeseg.cli.main import main as changeseg_main


def test_serve_is_a_verb_with_help(capsys):
    assert changeseg_main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--model", "--backend", "--device", "--max-upload-mb", "--max-pixels",
                   "--concurrency", "--queue", "--timeout"):
        assert option in out
    assert "[default: 127.0.0.1]" in out


def test_bad_model_is_one_line_and_exit_1(tmp_path, capsys):
    code = serve.main(["--backend", "onnx", "--model", str(tmp_path / "missing"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("option", [["--concurrency", "0"], ["--queue", "-1"], ["--timeout", "0"],
                                    ["--max-upload-mb", "0"], ["--backend", "tf"], ["--port", "70000"]])
def test_bad_limits_are_usage_errors(option, capsys):
    assert serve.main(option) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("192.168.1.4", False),
                                            ("example.org", False)])
def test_is_loopback(host, loopback):
    assert serve.is_loopback(host) is loopback
