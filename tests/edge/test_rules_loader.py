"""Rules from disk: directories, files, mistakes that stop the server, reloads."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from proxy.edge import rules_loader
from proxy.edge.rules_loader import ActiveRules, read_rules, watch_rules
from proxy.errors import ConfigError

DENY = '[[deny]]\nproject = "{name}"\n'


def test_a_directory_is_read_in_name_order_with_shipped_knowledge_first(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text(DENY.format(name="bee"))
    (tmp_path / "a.toml").write_text(DENY.format(name="ay"))
    (tmp_path / "notes.txt").write_text("not rules")
    rules = read_rules(tmp_path)
    assert [d.match.project for d in rules.deny] == ["ay", "bee"]
    assert rules.files[-2:] == (str(tmp_path / "a.toml"), str(tmp_path / "b.toml"))
    assert rules.files[0].startswith("proxy/data/") and rules.facts


def test_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "only.toml"
    path.write_text(DENY.format(name="x"))
    assert [d.where for d in read_rules(path).deny] == [f"{path}: deny[0]"]


def test_no_rules_path_means_shipped_knowledge_only() -> None:
    rules = read_rules(None)
    assert not rules.filters and rules.facts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[[deny]]\nproject = 'a b'\n", "{path}: deny[0].project: invalid project name 'a b'"),
        (b"\xff\xfe", "{path}: cannot read: "),
        (b"a = " + b"[" * 5000 + b"]" * 5000, "{path}: invalid TOML: nested too deeply"),
    ],
)
def test_bad_files_stop_loading_with_the_file_named(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_rules(tmp_path)
    assert str(caught.value).startswith(message.format(path=path))


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such rules file or directory"):
        read_rules(tmp_path / "nowhere")


def test_reload_swaps_good_rules_and_keeps_old_ones_on_a_bad_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(DENY.format(name="one"))
    active = ActiveRules(tmp_path)
    seen: list[str] = []
    active.on_change(lambda rules: seen.append(rules.digest))
    first = active.current
    assert not active.changed_on_disk()
    path.write_text(DENY.format(name="two"))
    assert active.changed_on_disk()
    assert active.reload()
    assert [d.match.project for d in active.current.deny] == ["two"]
    assert seen == [first.digest, active.current.digest]
    good = active.current
    path.write_text("[[deny]]\nproject = 'two'\nversion = '>>1'\n")
    with caplog.at_level(logging.ERROR, logger="hostfit.rules"):
        assert not active.reload()
    assert active.current is good and len(seen) == 2
    assert f"{path}: deny[0].version: invalid specifier '>>1'" in caplog.text
    assert "previous rules stay in force" in caplog.text
    assert not active.changed_on_disk()  # the bad file is not retried until it changes again


def test_a_reload_that_fails_unexpectedly_keeps_the_old_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "policy.toml").write_text(DENY.format(name="one"))
    active = ActiveRules(tmp_path)
    good = active.current
    outcomes: list[str] = []
    active.on_reloaded.append(outcomes.append)

    def unreadable(path: Path | None) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(rules_loader, "read_rules", unreadable)
    with caplog.at_level(logging.ERROR, logger="hostfit.rules"):
        assert not active.reload()
    assert active.current is good and outcomes == ["failed"]
    assert "previous rules stay in force" in caplog.text and "Permission denied" in caplog.text


async def test_the_watcher_outlives_an_unexpected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(DENY.format(name="one"))
    active = ActiveRules(tmp_path)
    checks = 0
    changed_on_disk = active.changed_on_disk

    def flaky() -> bool:
        nonlocal checks
        checks += 1
        if checks <= 3:  # a directory unreadable for a while, say
            raise PermissionError(13, "Permission denied", str(tmp_path))
        return changed_on_disk()

    monkeypatch.setattr(active, "changed_on_disk", flaky)
    with caplog.at_level(logging.ERROR, logger="hostfit.rules"):
        async with watch_rules(active, poll=0.01):
            path.write_text(DENY.format(name="two"))
            for _ in range(500):
                if [d.match.project for d in active.current.deny] == ["two"]:
                    break
                await asyncio.sleep(0.01)
    assert [d.match.project for d in active.current.deny] == ["two"]
    assert caplog.text.count("still watching") == 1  # one error, said once
