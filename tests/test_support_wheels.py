from __future__ import annotations

import base64
import csv
import ctypes
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.metadata import Metadata
from packaging.tags import parse_tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.support.wheels import (
    CompileError,
    WheelSpec,
    build_extension_module,
    build_sdist,
    build_wheel,
    compile_shared_object,
    extension_source,
    extension_wheel,
    record_hash,
)

SPECS = [
    WheelSpec("Demo_Pkg", "1.0"),
    WheelSpec("zope.Interface", "5.0.post1", tag="py2.py3-none-any"),
    WheelSpec(
        "numpy-ish",
        "2.1.0rc1",
        tag="cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
        build="1",
        files={"numpyish/core.so": b"\x7fELF fake", "numpyish/__init__.py": b""},
    ),
]


def _read_record(zf: zipfile.ZipFile) -> list[list[str]]:
    record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
    return list(csv.reader(io.StringIO(zf.read(record).decode())))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_filename_parses_back_to_the_spec(spec: WheelSpec, tmp_path: Path) -> None:
    wheel = build_wheel(spec, tmp_path)
    name, version, build, tags = parse_wheel_filename(wheel.name)
    assert name == canonicalize_name(spec.name)
    assert version == Version(spec.version)
    assert build == ((int(spec.build), "") if spec.build else ())
    assert tags == parse_tag(spec.tag)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_record_lists_every_member_with_matching_hash(spec: WheelSpec, tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(spec, tmp_path)) as zf:
        rows = _read_record(zf)
        names = zf.namelist()
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path.endswith(".dist-info/RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = zf.read(path)
            assert digest == record_hash(data)
            assert int(size) == len(data)
        assert names[-1].endswith(".dist-info/RECORD")


def test_record_hash_is_urlsafe_unpadded_sha256() -> None:
    data = b"\xfb\xff" * 100
    digest = hashlib.sha256(data).digest()
    encoded = record_hash(data).removeprefix("sha256=")
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert base64.urlsafe_b64decode(encoded + "=") == digest


def test_metadata_is_valid_core_metadata(tmp_path: Path) -> None:
    spec = WheelSpec(
        "Demo_Pkg",
        "1.0",
        requires_dist=["requests>=2", 'rich; extra == "pretty"'],
        requires_python=">=3.9, <4",
        extra_metadata=[("Summary", "demo")],
    )
    with zipfile.ZipFile(build_wheel(spec, tmp_path)) as zf:
        meta = Metadata.from_email(zf.read("demo_pkg-1.0.dist-info/METADATA"))
    assert meta.metadata_version == "2.1"
    assert meta.name == "Demo_Pkg"
    assert meta.version == Version("1.0")
    assert [str(r) for r in meta.requires_dist or []] == [
        "requests>=2",
        'rich; extra == "pretty"',
    ]
    assert str(meta.requires_python) == "<4,>=3.9"
    assert meta.provides_extra == ["pretty"]
    assert meta.summary == "demo"


def test_wheel_file_expands_tags_and_marks_platlib(tmp_path: Path) -> None:
    spec = SPECS[2]
    with zipfile.ZipFile(build_wheel(spec, tmp_path)) as zf:
        wheel = Parser().parsestr(zf.read("numpy_ish-2.1.0rc1.dist-info/WHEEL").decode())
        mode = zf.getinfo("numpyish/core.so").external_attr >> 16
        init_mode = zf.getinfo("numpyish/__init__.py").external_attr >> 16
        dates = {i.date_time for i in zf.infolist()}
        kinds = {i.compress_type for i in zf.infolist()}
    assert wheel["Wheel-Version"] == "1.0"
    assert wheel["Root-Is-Purelib"] == "false"
    assert wheel["Build"] == "1"
    assert sorted(wheel.get_all("Tag") or []) == [
        "cp311-cp311-manylinux2014_x86_64",
        "cp311-cp311-manylinux_2_17_x86_64",
    ]
    assert mode & 0o777 == 0o755
    assert init_mode & 0o777 == 0o644
    assert dates == {(1980, 1, 1, 0, 0, 0)}
    assert kinds == {zipfile.ZIP_DEFLATED}


def test_pure_wheel_is_purelib_and_gets_a_default_package(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(WheelSpec("Demo_Pkg", "3.2"), tmp_path)) as zf:
        wheel = Parser().parsestr(zf.read("demo_pkg-3.2.dist-info/WHEEL").decode())
        init = zf.read("demo_pkg/__init__.py").decode()
    assert wheel["Root-Is-Purelib"] == "true"
    assert wheel["Build"] is None
    assert '__version__ = "3.2"' in init


def test_no_default_package_when_files_have_a_top_level_module(tmp_path: Path) -> None:
    spec = WheelSpec("Demo_Pkg", "1.0", files={"single.py": b"X = 1\n"})
    with zipfile.ZipFile(build_wheel(spec, tmp_path)) as zf:
        assert not any(n.startswith("demo_pkg/") for n in zf.namelist())
        assert "single.py" in zf.namelist()


def test_builds_are_byte_identical(tmp_path: Path) -> None:
    for spec in SPECS:
        first = build_wheel(spec, tmp_path / "a").read_bytes()
        second = build_wheel(spec, tmp_path / "b").read_bytes()
        assert first == second
    changed = WheelSpec("Demo_Pkg", "1.0", files={"demo_pkg/__init__.py": b"# other\n"})
    assert build_wheel(changed, tmp_path / "c").read_bytes() != (
        build_wheel(SPECS[0], tmp_path / "d").read_bytes()
    )


def test_extension_wheels_are_byte_identical(tmp_path: Path) -> None:
    first = extension_wheel("ext-demo", "1.0", tmp_path / "a", value="x").read_bytes()
    second = extension_wheel("ext-demo", "1.0", tmp_path / "b", value="x").read_bytes()
    assert first == second


def test_invalid_build_tag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_wheel(WheelSpec("demo", "1.0", build="x1"), tmp_path)


def test_sdist_is_deterministic_and_complete(tmp_path: Path) -> None:
    first = build_sdist("Demo.Pkg", "1.0", tmp_path / "a")
    second = build_sdist("Demo.Pkg", "1.0", tmp_path / "b")
    assert first.name == "demo_pkg-1.0.tar.gz"
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
        pkg_info = tar.extractfile("demo_pkg-1.0/PKG-INFO")
        pyproject = tar.extractfile("demo_pkg-1.0/pyproject.toml")
        assert pkg_info is not None and pyproject is not None
        assert "Name: Demo.Pkg" in pkg_info.read().decode()
        assert "setuptools.build_meta" in pyproject.read().decode()
    assert "demo_pkg-1.0/demo_pkg/__init__.py" in names


def test_compiled_shared_object_loads_and_runs(tmp_path: Path) -> None:
    so = compile_shared_object(
        "#include <math.h>\nint add(int a, int b) { return a + b + (int)floor(0.5); }\n",
        tmp_path / "libadd.so",
        libs=["m"],
    )
    lib = ctypes.CDLL(str(so))
    assert lib.add(40, 2) == 42


def test_compiled_cxx_shared_object_loads(tmp_path: Path) -> None:
    source = (
        "#include <string>\n"
        'extern "C" int length() { return (int)std::string("hostfit").size(); }\n'
    )
    so = compile_shared_object(source, tmp_path / "libcxx.so", lang="c++")
    assert ctypes.CDLL(str(so)).length() == 7


def test_compile_error_carries_compiler_stderr(tmp_path: Path) -> None:
    with pytest.raises(CompileError) as info:
        compile_shared_object("int broken( {", tmp_path / "libbad.so")
    assert "error" in info.value.stderr
    assert not (tmp_path / "libbad.so").exists()


def test_extension_module_imports_in_a_subprocess(tmp_path: Path) -> None:
    value = 'héllo "quoted" \\ ?? end'
    so = build_extension_module("m_direct", extension_source("m_direct", value), tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", "import m_direct; print(m_direct.answer())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert so.parent == tmp_path
    assert out.stdout.rstrip("\n") == value


def test_extension_wheel_installs_with_pip_and_imports(tmp_path: Path) -> None:
    wheel = extension_wheel("Ext-Demo", "1.0", tmp_path / "dist", module="extdemo", value="42!")
    target = tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    out = subprocess.run(
        [sys.executable, "-c", "import extdemo; print(extdemo.answer(), extdemo.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
    )
    answer, path = out.stdout.split()
    assert answer == "42!"
    assert Path(path).parent == target
    assert (target / "ext_demo-1.0.dist-info" / "RECORD").exists()
