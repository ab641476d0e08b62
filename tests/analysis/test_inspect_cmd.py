"""`hostfit inspect`: a readable table, --json, local paths and URLs."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import pytest

from proxy.analysis.wheel import analyze_wheel
from proxy.cli import main
from proxy.cli.inspect import _Progress, _size
from proxy.core.report import Report
from tests.analysis.hostile import zip_bytes
from tests.fixtures.elf.recipes import FixtureWheel
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_table(glibc_wheel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(glibc_wheel)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(glibc_wheel.name)
    assert sha256(glibc_wheel) in out
    assert "manylinux_2_26_x86_64  (the wheel's own tag over-claims)" in out
    assert "  glibc         2.25\n" in out
    assert "fx_glibc/_random.so  x86_64   GLIBC_2.25" in out


def test_json(glibc_wheel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--json", str(glibc_wheel)]) == 0
    report = Report.from_json(json.loads(capsys.readouterr().out))
    with glibc_wheel.open("rb") as source:
        assert report == analyze_wheel(source, glibc_wheel.name, sha256(glibc_wheel))


def test_url(glibc_wheel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = sha256(glibc_wheel)
    with Upstream() as server:
        server.add("fx-glibc", glibc_wheel)
        url = f"{server.file_url(glibc_wheel.name)}#sha256={digest}"
        assert main(["inspect", "--json", url]) == 0
    captured = capsys.readouterr()
    report = Report.from_json(json.loads(captured.out))
    assert report.sha256 == digest
    assert report.filename == glibc_wheel.name
    assert report.requires.glibc == "2.25"
    size = glibc_wheel.stat().st_size
    expected = f"fetched {size:,} bytes ({_size(size)}) of {size:,} (100.0%) in 1 requests"
    assert expected in captured.err
    assert "by range requests" in captured.err


def test_a_url_read_whole_is_hashed_and_checked(
    glibc_wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without Range support the whole file comes: its sha256 is the bytes', and a URL
    whose fragment names another digest is refused."""
    digest = sha256(glibc_wheel)
    with Upstream() as server:
        server.ranges = False
        server.add("fx-glibc", glibc_wheel)
        assert main(["inspect", "--json", server.file_url(glibc_wheel.name)]) == 0
        captured = capsys.readouterr()
        assert Report.from_json(json.loads(captured.out)).sha256 == digest
        assert "by a full download (no Range support)" in captured.err
        wrong = f"{server.file_url(glibc_wheel.name)}#sha256={'0' * 64}"
        assert main(["inspect", wrong]) == 2
    err = capsys.readouterr().err
    assert f"its bytes' sha256 is {digest}, the URL says {'0' * 64}" in err


def test_a_url_read_whole_by_ranges_is_hashed_and_checked(
    glibc_wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small wheel's analysis fetches all of it, by ranges: its sha256 is the bytes'
    with or without a fragment, and a fragment naming another digest is refused."""
    digest = sha256(glibc_wheel)
    with Upstream() as server:
        server.add("fx-glibc", glibc_wheel)
        assert main(["inspect", "--json", server.file_url(glibc_wheel.name)]) == 0
        captured = capsys.readouterr()
        assert Report.from_json(json.loads(captured.out)).sha256 == digest
        assert "by range requests" in captured.err and "(100.0%)" in captured.err
        wrong = f"{server.file_url(glibc_wheel.name)}#sha256={'0' * 64}"
        assert main(["inspect", "--json", wrong]) == 2
    captured = capsys.readouterr()
    assert f"its bytes' sha256 is {digest}, the URL says {'0' * 64}" in captured.err
    assert captured.out == ""


def test_a_url_read_in_part_says_whose_sha256_the_report_carries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = random.Random(3).randbytes(4 * 1024 * 1024)  # stored: analysis never reads it
    wheel = build_wheel(WheelSpec("bulky", "1.0", files={"bulky/data.bin": data}), tmp_path)
    digest = sha256(wheel)
    with Upstream() as server:
        server.add("bulky", wheel)
        url = server.file_url(wheel.name)
        assert main(["inspect", "--json", f"{url}#sha256={digest}"]) == 0
        told = capsys.readouterr()
        assert main(["inspect", "--json", url]) == 0
        unknown = capsys.readouterr()
    assert Report.from_json(json.loads(told.out)).sha256 == digest
    assert "sha256: the URL's, not checked (only part of the file was read)" in told.err
    assert Report.from_json(json.loads(unknown.out)).sha256 == ""
    assert "sha256: unknown (only part of the file was read; the URL names none)" in unknown.err


@pytest.mark.parametrize("target", ["http://[::1", "https://[bad/x.whl"])
def test_a_url_it_cannot_split_is_an_error(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", target]) == 2
    err = capsys.readouterr().err
    assert "is not a URL it can read" in err and "Traceback" not in err


def test_unanalysable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = tmp_path / "bad-1.0-py3-none-any.whl"
    wheel.write_bytes(zip_bytes({"../escape.so": b"\x7fELF"}))
    assert main(["inspect", str(wheel)]) == 1
    out = capsys.readouterr().out
    assert "status        unanalysable" in out
    assert "unsafe member name '../escape.so'" in out


def test_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "absent.whl")]) == 2
    assert "absent.whl" in capsys.readouterr().err


def test_progress_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = _Progress(stream, delay=0.0)
    progress(1_500_000, 191_800_000)
    progress.clear()
    assert stream.getvalue() == "\rfetching: 1.5 MB of a 191.8 MB wheel \r\x1b[K"


def test_table_names_the_driver_a_wheel_loads(
    fixture_wheels: dict[str, FixtureWheel], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(fixture_wheels["driver"].path)]) == 0
    assert "  nvidia driver libcuda.so.1\n" in capsys.readouterr().out
    assert main(["inspect", str(fixture_wheels["driver-dlopened"].path)]) == 0
    assert "  nvidia driver -\n" in capsys.readouterr().out


def test_table_says_what_an_import_loads_that_a_loader_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The loader checks' facts in the table, not only in --json: here a musl module with
    initial-exec TLS of its own, and an object file under a module's name."""
    source = (
        'static __thread int counter __attribute__((tls_model("initial-exec")));\n'
        "int PyInit__ext(void) { return ++counter; }\n"
    )
    module = compile_shared_object(source, tmp_path / "_ext.so", compiler="musl-gcc")
    obj = compile_shared_object(source, tmp_path / "_obj.o", kind="object")
    files = {
        "pkg/_ext.cpython-311-x86_64-linux-musl.so": module.read_bytes(),
        "pkg/_obj.cpython-311-x86_64-linux-musl.so": obj.read_bytes(),
    }
    tag = "cp311-cp311-musllinux_1_2_x86_64"
    wheel = build_wheel(WheelSpec("pkg", "1.0", tag=tag, files=files), tmp_path)
    assert main(["inspect", str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "an import loads\n  machines      x86_64\n" in out
    assert "  not mappable  pkg/_obj.cpython-311-x86_64-linux-musl.so\n" in out
    assert "  IE TLS        pkg/_ext.cpython-311-x86_64-linux-musl.so\n" in out
    assert "  module ABIs   cpython-311\n" in out


def test_table_of_a_pure_wheel_says_no_import_loads_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = build_wheel(WheelSpec("pkg", "1.0", files={"pkg/__init__.py": b""}), tmp_path)
    assert main(["inspect", str(wheel)]) == 0
    assert "an import loads" not in capsys.readouterr().out
