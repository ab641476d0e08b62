"""Wheel rewrites: plans, deterministic bytes, consistent WHEEL, METADATA and RECORD."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
from email.parser import BytesParser
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from proxy.core.report import Report, Requires
from proxy.core.rewrite import (
    Rewrite,
    RewriteError,
    new_filename,
    plan,
    rewrite_metadata,
    rewrite_wheel,
)
from proxy.core.rules import load_rules
from proxy.core.variant_markers import settle_markers
from tests.support.wheels import WheelSpec, build_wheel

P = "rules/p.toml"
SHA = "ab" * 32
CP = "cp311-cp311"
RULES = """
[[retag]]
project = "*"

[sources]
s = "a ticket"

[[metadata]]
project = "fixme"
version = "<2"
add_requires = ["numpy<2"]
remove_requires = ["six"]
requires_python = ">=3.9"
source = "s"
"""


def report(filename: str, derived: str | None, overclaims: bool = False) -> Report:
    return Report(
        filename, SHA, requires=Requires(libc="glibc", glibc="2.25"),
        derived_platform_tag=derived, overclaims=overclaims,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "derived", "overclaims", "platform"),
    [
        # claims less than its binaries need: served under the truthful tag
        (f"p-1.0-{CP}-manylinux_2_17_x86_64.whl", "manylinux_2_26_x86_64", True,
         "manylinux_2_26_x86_64"),
        # plain linux_* whose binaries justify manylinux
        (f"p-1.0-{CP}-linux_x86_64.whl", "manylinux_2_17_x86_64", False, "manylinux_2_17_x86_64"),
        # a tag more conservative than needed is not the proxy's to widen
        (f"p-1.0-{CP}-manylinux_2_28_x86_64.whl", "manylinux_2_17_x86_64", False, None),
        (f"p-1.0-{CP}-manylinux_2_17_x86_64.whl", "manylinux_2_17_x86_64", False, None),
        (f"p-1.0-{CP}-linux_aarch64.whl", "manylinux_2_17_x86_64", False, None),
        (f"p-1.0-{CP}-manylinux_2_17_x86_64.whl", None, True, None),
    ],
)  # fmt: skip
def test_retag_plans(
    filename: str, derived: str | None, overclaims: bool, platform: str | None
) -> None:
    rules = load_rules({P: RULES})
    planned = plan(rules, filename, report(filename, derived, overclaims))
    assert (planned.platform if planned else None) == platform
    if planned:
        assert planned.rules == (f"{P}: retag[0]",)
    assert plan(load_rules({}), filename, report(filename, derived, overclaims)) is None


def test_retag_needs_a_report_and_metadata_fixes_do_not() -> None:
    rules = load_rules({P: RULES})
    assert plan(rules, f"p-1.0-{CP}-linux_x86_64.whl", None) is None
    fix = plan(rules, "fixme-1.5-py3-none-any.whl", None)
    assert fix == Rewrite(None, ("numpy<2",), frozenset({"six"}), ">=3.9")
    assert fix is not None and fix.rules == (f"{P}: metadata[0]",)
    assert plan(rules, "fixme-2.0-py3-none-any.whl", None) is None


def test_new_filenames_get_their_own_build_tag() -> None:
    rewrite = Rewrite(platform="manylinux_2_26_x86_64")
    name = new_filename(f"p-1.0-{CP}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", SHA, rewrite)
    _, version, build, tags = parse_wheel_filename(name)
    assert str(version) == "1.0"
    assert len(build) == 2
    assert build[0] == 0 and build[1].startswith(".hf") and len(build[1]) == 15
    assert {str(t) for t in tags} == {f"{CP}-manylinux_2_26_x86_64"}
    with_build = new_filename(f"p-1.0-7x-{CP}-linux_x86_64.whl", SHA, rewrite)
    assert parse_wheel_filename(with_build)[2][:1] == (7,)
    assert "-7x.hf" in with_build
    # The digest covers the input and the rewrite: other bytes, other name.
    assert new_filename(f"p-1.0-{CP}-linux_x86_64.whl", "cd" * 32, rewrite) != new_filename(
        f"p-1.0-{CP}-linux_x86_64.whl", SHA, rewrite
    )
    other = Rewrite(platform="manylinux_2_28_x86_64")
    assert new_filename(f"p-1.0-{CP}-linux_x86_64.whl", SHA, rewrite) != new_filename(
        f"p-1.0-{CP}-linux_x86_64.whl", SHA, other
    )


METADATA = (
    b"Metadata-Version: 2.1\nName: fixme\nVersion: 1.0\nRequires-Python: >=3.6\n"
    b"Requires-Dist: six>=1.0\nRequires-Dist: requests\nRequires-Dist: Six ; extra == 'x'\n"
    b"Provides-Extra: x\n\nA description\nRequires-Dist: not-a-header\n"
)


def test_metadata_changes_touch_only_the_headers_asked_for() -> None:
    fix = Rewrite(None, ("numpy<2",), frozenset({"six"}), ">=3.9")
    out = rewrite_metadata(METADATA, fix)
    assert out == (
        b"Metadata-Version: 2.1\nName: fixme\nVersion: 1.0\nRequires-Python: >=3.9\n"
        b"Requires-Dist: requests\nRequires-Dist: numpy<2\n"
        b"Provides-Extra: x\n\nA description\nRequires-Dist: not-a-header\n"
    )
    removed = rewrite_metadata(METADATA, Rewrite(requires_python=""))
    assert b"Requires-Python" not in removed.split(b"\n\n")[0]
    bare = rewrite_metadata(
        b"Metadata-Version: 2.1\nName: a\nVersion: 1\n", Rewrite(None, ("b",), frozenset(), ">=3")
    )
    assert bare == (
        b"Metadata-Version: 2.1\nName: a\nVersion: 1\nRequires-Python: >=3\nRequires-Dist: b\n"
    )


@pytest.mark.parametrize(
    ("head", "body"),
    [
        ("\n", b"Written on Windows\r\n\r\nmore\r\n"),  # LF headers, CRLF description
        ("\r\n", b"Written on Linux\n\nmore\n"),  # CRLF headers, LF description
        ("\r\n", b"Written on Windows\r\n\r\nmore\r\n"),
    ],
)
def test_metadata_fixes_find_the_headers_whatever_line_ending_the_description_has(
    head: str, body: bytes
) -> None:
    headers = ["Metadata-Version: 2.1", "Name: fixme", "Version: 1.0", "Requires-Python: >=3.6"]
    headers += ["Requires-Dist: six", "Requires-Dist: requests"]
    data = (head.join(headers) + head + head).encode() + body
    out = rewrite_metadata(data, Rewrite(None, ("numpy<2",), frozenset({"six"}), ">=3.9"))
    expected = [*headers[:3], "Requires-Python: >=3.9", "Requires-Dist: requests"]
    assert out == (head.join([*expected, "Requires-Dist: numpy<2"]) + head + head).encode() + body


def test_metadata_fixes_find_lf_headers_beside_a_folded_description_with_crlf() -> None:
    """Metadata 1.x/2.0 keep the description in a folded Description header, which
    setuptools splits on LF only: its CRLFs made every header look like a CRLF line."""
    data = (
        b"Metadata-Version: 2.0\nName: fixme\nVersion: 1.0\n"
        b"Description: line one\r\n        |line two\r\n        |\n"
        b"Requires-Dist: six\nRequires-Dist: requests\n\n"
    )
    out = rewrite_metadata(data, Rewrite(None, ("numpy<2",), frozenset({"six"}), None))
    lines = out.decode().split("\n")
    assert "Requires-Dist: six" not in lines
    assert lines[-4:] == ["Requires-Dist: requests", "Requires-Dist: numpy<2", "", ""]


def test_variant_markers_are_settled_under_lf_headers_with_a_crlf_description() -> None:
    settled = settle_markers(
        b"Name: v\nRequires-Dist: fast; 'ns :: f :: v' in variant_properties\n\nBody\r\n",
        "lbl",
        {"ns :: f :: v"},
    )
    assert settled == b'Name: v\nRequires-Dist: fast; python_version >= "0"\n\nBody\r\n'


def wheel(tmp_path: Path, tag: str = f"{CP}-linux_x86_64") -> Path:
    files = {"fixme/__init__.py": b"X = 1\n", "fixme/lib.so": b"\x7fELF"}
    spec = WheelSpec(
        "fixme", "1.0", tag=tag, files=files, requires_dist=["six>=1.0", "requests"],
        requires_python=">=3.6",
    )  # fmt: skip
    return build_wheel(spec, tmp_path)


def rewritten(path: Path, rewrite: Rewrite) -> tuple[bytes, str]:
    sink = io.BytesIO()
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with path.open("rb") as source:
        result = rewrite_wheel(source, sink, path.name, sha, rewrite)
    data = sink.getvalue()
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.size == len(data)
    return data, result.filename


def test_a_rewritten_wheel_is_consistent_and_the_same_every_time(tmp_path: Path) -> None:
    path = wheel(tmp_path)
    rewrite = Rewrite("manylinux_2_17_x86_64", ("numpy<2",), frozenset({"six"}), ">=3.9")
    data, name = rewritten(path, rewrite)
    assert rewritten(path, rewrite) == (data, name)
    assert name.endswith(f"-{CP}-manylinux_2_17_x86_64.whl")
    with zipfile.ZipFile(io.BytesIO(data)) as zf, zipfile.ZipFile(path) as original:
        assert zf.testzip() is None
        assert zf.namelist() == original.namelist()
        for info in original.infolist():
            if not info.filename.endswith(("WHEEL", "METADATA", "RECORD")):
                assert zf.read(info.filename) == original.read(info.filename)
                assert zf.getinfo(info.filename).compress_type == info.compress_type
            assert zf.getinfo(info.filename).date_time == info.date_time
            assert zf.getinfo(info.filename).external_attr == info.external_attr
        wheel_text = zf.read("fixme-1.0.dist-info/WHEEL").decode()
        build = parse_wheel_filename(name)[2]
        assert len(build) == 2
        assert f"Tag: {CP}-manylinux_2_17_x86_64" in wheel_text.splitlines()
        assert f"Build: {build[0]}{build[1]}" in wheel_text.splitlines()
        assert "linux_x86_64" not in wheel_text.replace("manylinux_2_17_x86_64", "")
        metadata = BytesParser().parsebytes(zf.read("fixme-1.0.dist-info/METADATA"))
        assert metadata.get_all("Requires-Dist") == ["requests", "numpy<2"]
        assert metadata["Requires-Python"] == ">=3.9"
        record = list(csv.reader(io.StringIO(zf.read("fixme-1.0.dist-info/RECORD").decode())))
        for path_, digest, size in record:
            if path_.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            content = zf.read(path_)
            expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
            assert (digest, size) == ("sha256=" + expected.decode(), str(len(content)))


def test_signatures_over_the_old_record_are_dropped(tmp_path: Path) -> None:
    path = wheel(tmp_path)
    signed = tmp_path / "signed" / path.name
    signed.parent.mkdir()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(signed, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("fixme-1.0.dist-info/RECORD.jws", b"{}")
    data, _ = rewritten(signed, Rewrite(platform="manylinux_2_17_x86_64"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert "fixme-1.0.dist-info/RECORD.jws" not in zf.namelist()


def test_what_cannot_be_rewritten_says_why(tmp_path: Path) -> None:
    bogus = tmp_path / f"fixme-1.0-{CP}-linux_x86_64.whl"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(RewriteError, match="not a readable zip"):
        rewritten(bogus, Rewrite(platform="manylinux_2_17_x86_64"))
    other = tmp_path / "other"
    other.mkdir()
    path = wheel(other)
    renamed = other / f"other-1.0-{CP}-linux_x86_64.whl"
    path.rename(renamed)
    with pytest.raises(RewriteError, match=r"no \.dist-info directory for other 1\.0"):
        rewritten(renamed, Rewrite(platform="manylinux_2_17_x86_64"))


def damaged(tmp_path: Path, how: str) -> Path:
    """The test wheel with one member damaged the way a hostile or broken upload can be."""
    path = wheel(tmp_path)
    out = tmp_path / "damaged" / path.name
    out.parent.mkdir()
    metadata = "fixme-1.0.dist-info/METADATA"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if how == "record" and info.filename.endswith("/RECORD"):
                data += b"x" * 200_000 + b",,\n"  # past the csv module's field limit
            method = zipfile.ZIP_STORED if how == "method" else zipfile.ZIP_DEFLATED
            dst.writestr(info, data, compress_type=method)
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo(metadata)
    raw = bytearray(out.read_bytes())
    data_at = info.header_offset + 30 + len(metadata.encode())
    if how == "crc":
        crc, bad = (info.CRC.to_bytes(4, "little"), (info.CRC ^ 1).to_bytes(4, "little"))
        raw = bytearray(bytes(raw).replace(crc, bad))
    elif how == "deflate":
        raw[data_at] = 0xFF  # a final block of the reserved type 3
    elif how == "method":  # 99 (AE-x), in the local header and the central directory
        raw[info.header_offset + 8 : info.header_offset + 10] = (99).to_bytes(2, "little")
        entry = bytes(raw).rindex(metadata.encode()) - 46
        assert raw[entry : entry + 4] == b"PK\x01\x02"
        raw[entry + 10 : entry + 12] = (99).to_bytes(2, "little")
    out.write_bytes(bytes(raw))
    return out


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("crc", "METADATA: damaged member: Bad CRC-32"),
        ("deflate", "METADATA: damaged member: Error -3 while decompressing"),
        ("method", "METADATA: damaged member: That compression method is not supported"),
        ("record", "RECORD: unreadable: field larger than field limit"),
    ],
)
def test_a_damaged_wheel_is_a_rewrite_error_not_a_crash(
    tmp_path: Path, how: str, message: str
) -> None:
    path = damaged(tmp_path, how)
    with pytest.raises(RewriteError, match=f"^fixme-1.0.dist-info/{message}"):
        rewritten(path, Rewrite(remove_requires=frozenset({"six"})))
