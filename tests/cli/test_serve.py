"""`changeseg serve` argument handling (the running server is tested in tests/service)."""

from __future__ import annotations

import pytest

from changeseg.cli import serve
from changeseg.cli.main import main as changeseg_main


def test_serve_is_a_verb_with_help(capsys):
    assert changeseg_main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--model", "--backend", "--device", "--max-upload-mb", "--max-pixels",
                   "--concurrency", "--queue", "--timeout", "--api-key-file", "--no-access-log"):
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


@pytest.mark.parametrize("content, message", [(None, "API key file not found"), ("# empty\n", "holds no key"),
                                              ("short\n", "at least 16 characters")])
def test_bad_api_key_file_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch, content, message):
    monkeypatch.delenv("CHANGESEG_API_KEYS", raising=False)
    key_file = tmp_path / "keys.txt"
    if content is not None:
        key_file.write_text(content)
    # The keys are checked before the model is loaded: this model does not exist either.
    code = serve.main(["--api-key-file", str(key_file), "--model", str(tmp_path / "no-model"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_bad_key_in_the_environment_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHANGESEG_API_KEYS", "short")
    assert serve.main(["--model", str(tmp_path / "no-model"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: CHANGESEG_API_KEYS, key 1:") and err.count("\n") == 1


@pytest.mark.parametrize("host, keys, expected", [
    ("127.0.0.1", False, None), ("::1", True, None),
    ("0.0.0.0", False, "warning: listening on 0.0.0.0 with no API key"),
    ("10.1.2.3", True, "note: listening on 10.1.2.3 with API keys")])
def test_exposure_note(host, keys, expected):
    note = serve.exposure_note(host, keys)
    if expected is None:
        assert note is None
    else:
        assert note.startswith(expected)
