"""The file drop adapter, as a department uses it: envelope files put into a folder reach the
subscribers and are moved to processed; refused ones land in rejects with a .reason file.
Run on the in-memory transport and on RabbitMQ; `govbus adapters check` through the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import adapters.filedrop
from adapters.filedrop import FileDrop
from adapters.registry import AdapterSpec, build
from bus.app import Context
from bus.envelope import Envelope, build_envelope

from tests.conftest import DATA, ROOT, inbox_ids, polling, running, wait_until
from tests.samples import legal_entity, person_envelope

GOVBUS = ROOT / ".venv" / "bin" / "govbus"


def file_drop(context: Context, folder: Path, **settings: str) -> FileDrop:
    adapter = build(AdapterSpec("ga-drop", "filedrop", "GA", {"folder": str(folder), "interval": "0.05", **settings}),
                    context)
    assert isinstance(adapter, FileDrop)
    return adapter


def drop(folder: Path, name: str, env: Envelope) -> Path:
    """Write a file as a well-behaved writer does: under a temporary name, then renamed."""
    partial = folder / f"{name}.part"
    partial.write_bytes(env.body)
    return partial.rename(folder / name)


def reason_of(path: Path) -> dict[str, str]:
    text = path.with_name(path.name + ".reason").read_text(encoding="utf-8")
    return dict(line.split(": ", 1) for line in text.splitlines())


def test_a_complete_file_reaches_the_subscribers_and_moves_to_processed(context, tmp_path):
    folder = tmp_path / "ga-out"
    folder.mkdir()
    first, second = person_envelope(), person_envelope(Name="林小燕")
    # a writer still busy with these: they must stay untouched
    busy = [folder / ".3.xml", folder / "4.xml.tmp", folder / "5.xml.part"]
    for path in busy:
        path.write_bytes(person_envelope().body)
    adapter = file_drop(context, folder)
    with running(context), polling(context, adapter):
        drop(folder, "1.xml", first)
        wait_until(lambda: (folder / "processed" / "1.xml").exists(), message="1.xml in processed")
        drop(folder, "1.xml", second)  # the same name again: kept apart, not overwritten
        wait_until(lambda: (folder / "processed" / "1-1.xml").exists(), message="1-1.xml in processed")
        wait_until(lambda: len(inbox_ids(context, "MZ")) == 2 and len(inbox_ids(context, "RS")) == 2,
                   message="both deliveries")
    assert inbox_ids(context, "MZ") == [first.message_id, second.message_id]
    assert inbox_ids(context, "RS") == [first.message_id, second.message_id]
    assert (folder / "processed" / "1.xml").read_bytes() == first.body
    assert (folder / "processed" / "1-1.xml").read_bytes() == second.body
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(p.name for p in busy)
    assert list((folder / "rejects").iterdir()) == []


def test_refused_files_go_to_rejects_beside_their_reason(context, tmp_path):
    folder = tmp_path / "ga-out"
    folder.mkdir()
    invalid = person_envelope(Sex="5")
    foreign = build_envelope("GS", "GS-001", "1.0", legal_entity())  # GS's record, dropped in GA's folder
    good = person_envelope()
    (folder / "broken.xml").write_bytes(b"<env:Envelope xmlns:env='urn:zhuhai:govbus:envelope'><env:Header>")
    (folder / "huge.xml").write_bytes(b"<a>" + b" " * context.settings.xml.max_bytes + b"</a>")
    adapter = file_drop(context, folder, rejects=str(tmp_path / "refused"))
    with running(context), polling(context, adapter):
        drop(folder, "invalid.xml", invalid)
        drop(folder, "foreign.xml", foreign)
        drop(folder, "good.xml", good)
        wait_until(lambda: inbox_ids(context, "RS") and (folder / "processed" / "good.xml").exists(),
                   message="the good file delivered")
        wait_until(lambda: not any(folder.glob("*.xml")), message="every file moved aside")
    rejects = tmp_path / "refused"
    assert sorted(p.name for p in rejects.iterdir()) == [
        "broken.xml", "broken.xml.reason", "foreign.xml", "foreign.xml.reason", "huge.xml", "huge.xml.reason",
        "invalid.xml", "invalid.xml.reason"]

    reason = reason_of(rejects / "invalid.xml")
    lines = invalid.body.decode().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "<p:Sex>" in text)
    assert reason["reason"] == "schema_violation"
    assert reason["rule"] == "cvc-enumeration-valid"
    assert (reason["line"], reason["column"]) == (str(line), str(lines[line - 1].index("<p:Sex>") + 1))
    assert reason["message_id"] == invalid.message_id
    assert (rejects / "invalid.xml").read_bytes() == invalid.body

    reason = reason_of(rejects / "foreign.xml")
    assert reason["reason"] == "not_authorized"
    assert "GA" in reason["message"] and "GS" in reason["message"]

    reason = reason_of(rejects / "broken.xml")
    assert reason["reason"] == "malformed_xml"
    assert reason["line"] == "1"
    assert reason_of(rejects / "huge.xml")["reason"] == "xml_too_large"

    # RS subscribes to both GA-001 and GS-001: only GA's good record reached it
    assert inbox_ids(context, "RS") == [good.message_id]
    assert inbox_ids(context, "MZ") == [good.message_id]


def test_a_file_confirmed_but_not_moved_is_delivered_once(context, tmp_path, monkeypatch):
    # The process dies between the broker's confirm and the move: the file is submitted again
    # on the next poll, and the ingress drops the repeat by message id.
    folder = tmp_path / "ga-out"
    folder.mkdir()
    env = person_envelope()
    real_move = adapters.filedrop.shutil.move
    failed: list[str] = []

    def move_failing_once(source: Path, target: Path) -> object:
        if not failed:
            failed.append(str(source))
            raise OSError(5, "Input/output error")
        return real_move(source, target)

    monkeypatch.setattr(adapters.filedrop.shutil, "move", move_failing_once)
    with running(context), polling(context, file_drop(context, folder)):
        drop(folder, "1.xml", env)
        wait_until(lambda: (folder / "processed" / "1.xml").exists(), message="1.xml in processed")
        wait_until(lambda: inbox_ids(context, "MZ"), message="the delivery")
        # a later file is a barrier: once it arrived, any repeat of the first would have too
        later = person_envelope(Name="林小燕")
        drop(folder, "2.xml", later)
        wait_until(lambda: len(inbox_ids(context, "MZ")) == 2, message="the later file")
    assert failed == [str(folder / "1.xml")]
    assert inbox_ids(context, "MZ") == [env.message_id, later.message_id]


def clean_environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env.update(GOVBUS_DATA_DIR=str(tmp_path / "var"), GOVBUS_ROUTES=str(DATA / "routes.toml"))
    return env


def adapters_check(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "adapters.toml"
    path.write_text(config, encoding="utf-8")
    return subprocess.run([str(GOVBUS), "adapters", "check", str(path)], env=clean_environment(tmp_path),
                          capture_output=True, text=True, timeout=60)


def test_adapters_check_names_a_wrong_setting_and_exits_2(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = adapters_check(tmp_path, f"""
[[adapter]]
name = "ga-drop"
type = "filedrop"
department = "GA"
[adapter.settings]
folder = "{missing}"
""")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "ga-drop" in line and f"folder={str(missing)!r}" in line and "does not exist" in line


def test_adapters_check_passes_a_good_file(tmp_path):
    folder = tmp_path / "ga-out"
    folder.mkdir()
    result = adapters_check(tmp_path, f"""
[[adapter]]
name = "ga-drop"
type = "filedrop"
department = "GA"
[adapter.settings]
folder = "{folder}"
batch = 20
""")
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert "ok  ga-drop: filedrop (inbound) for GA" in result.stdout
    assert f"folder = {folder}" in result.stdout and "batch = 20" in result.stdout
