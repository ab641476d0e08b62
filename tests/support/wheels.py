"""Build real, deterministic wheels, sdists and shared objects for tests.

Everything here is byte-reproducible: the same inputs give the same bytes, so
tests can compare hashes across builds and processes.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packaging.tags import parse_tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

# The zip format cannot store dates before 1980; using its epoch keeps builds reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
TAR_EPOCH = 315532800  # 1980-01-01T00:00:00Z, same instant as ZIP_EPOCH
GENERATOR = "hostfit-tests (1.0)"

_EXTRA_IN_MARKER = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")
_IMPORTABLE_SUFFIXES = (".py", ".so", ".pyd", ".pth")


@dataclass
class WheelSpec:
    name: str
    version: str
    tag: str = "py3-none-any"
    build: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    requires_dist: list[str] = field(default_factory=list)
    requires_python: str | None = None
    extra_metadata: list[tuple[str, str]] = field(default_factory=list)

    @property
    def escaped_name(self) -> str:
        return escape_name(self.name)

    @property
    def normalized_version(self) -> str:
        return str(Version(self.version))

    @property
    def import_name(self) -> str:
        return self.escaped_name.lower()

    @property
    def dist_info(self) -> str:
        return f"{self.escaped_name}-{self.normalized_version}.dist-info"

    @property
    def filename(self) -> str:
        build = f"-{self.build}" if self.build else ""
        name = f"{self.escaped_name}-{self.normalized_version}{build}-{self.tag}.whl"
        parse_wheel_filename(name)  # refuse to produce a name no installer would accept
        return name

    @property
    def purelib(self) -> bool:
        return all(t.abi == "none" and t.platform == "any" for t in parse_tag(self.tag))

    def metadata_text(self) -> str:
        lines = [
            ("Metadata-Version", "2.1"),
            ("Name", self.name),
            ("Version", self.version),
        ]
        if self.requires_python is not None:
            lines.append(("Requires-Python", self.requires_python))
        lines.extend(("Requires-Dist", req) for req in self.requires_dist)
        declared = {v for k, v in self.extra_metadata if k.lower() == "provides-extra"}
        for extra in sorted(_extras_used(self.requires_dist) - declared):
            lines.append(("Provides-Extra", extra))
        lines.extend(self.extra_metadata)
        return "".join(f"{k}: {v}\n" for k, v in lines)

    def wheel_text(self) -> str:
        lines = [
            "Wheel-Version: 1.0",
            f"Generator: {GENERATOR}",
            f"Root-Is-Purelib: {'true' if self.purelib else 'false'}",
        ]
        lines.extend(f"Tag: {t}" for t in sorted(str(t) for t in parse_tag(self.tag)))
        if self.build:
            lines.append(f"Build: {self.build}")
        return "\n".join(lines) + "\n"


def escape_name(name: str) -> str:
    """The distribution name as wheel filenames and .dist-info directories spell it."""
    return canonicalize_name(name).replace("-", "_")


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _extras_used(requirements: Iterable[str]) -> set[str]:
    return {m.group(1) for req in requirements for m in _EXTRA_IN_MARKER.finditer(req)}


def _has_top_level_import(paths: Iterable[str]) -> bool:
    for path in paths:
        head, sep, _ = path.partition("/")
        if sep:
            if not head.endswith((".dist-info", ".data")):
                return True
        elif ".so" in path or path.endswith(_IMPORTABLE_SUFFIXES):
            return True
    return False


def _file_mode(path: str) -> int:
    name = path.rsplit("/", 1)[-1]
    return 0o755 if name.endswith(".so") or ".so." in name else 0o644


def _zip_member(path: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so external_attr carries the permission bits
    info.external_attr = (0o100000 | _file_mode(path)) << 16
    return info


def wheel_members(spec: WheelSpec) -> dict[str, bytes]:
    """Every archive member except RECORD; files in spec.files win over generated ones."""
    members: dict[str, bytes] = {}
    if not _has_top_level_import(spec.files):
        init = f'__version__ = "{spec.version}"\n'
        members[f"{spec.import_name}/__init__.py"] = init.encode()
    members[f"{spec.dist_info}/METADATA"] = spec.metadata_text().encode()
    members[f"{spec.dist_info}/WHEEL"] = spec.wheel_text().encode()
    members.update(spec.files)
    return members


def _record(members: dict[str, bytes], record_path: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, data in members.items():
        writer.writerow([path, record_hash(data), str(len(data))])
    writer.writerow([record_path, "", ""])
    return out.getvalue().encode()


def _ordered(paths: Iterable[str], dist_info: str) -> list[str]:
    # Installers expect the .dist-info directory at the end, RECORD last of all.
    record = f"{dist_info}/RECORD"
    return sorted(paths, key=lambda p: (p == record, p.startswith(f"{dist_info}/"), p))


def build_wheel(spec: WheelSpec, out_dir: Path) -> Path:
    members = wheel_members(spec)
    record_path = f"{spec.dist_info}/RECORD"
    ordered = _ordered(members, spec.dist_info)
    if record_path not in members:
        members[record_path] = _record(
            {p: members[p] for p in ordered if p != record_path}, record_path
        )
        ordered.append(record_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.filename
    with zipfile.ZipFile(target, "w") as zf:
        for path in ordered:
            zf.writestr(_zip_member(path), members[path])
    return target


def build_sdist(
    name: str, version: str, out_dir: Path, *, files: dict[str, bytes] | None = None
) -> Path:
    """A setuptools-backed sdist; builds only where setuptools can be installed."""
    escaped = escape_name(name)
    root = f"{escaped}-{Version(version)}"
    members: dict[str, bytes] = {}
    supplied = dict(files or {})
    if not _has_top_level_import(supplied):
        members[f"{escaped.lower()}/__init__.py"] = f'__version__ = "{version}"\n'.encode()
    members["PKG-INFO"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members["pyproject.toml"] = (
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "\n[project]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
    ).encode()
    members.update(supplied)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(members):
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(members[path])
            info.mtime = TAR_EPOCH
            info.mode = _file_mode(path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[path]))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{root}.tar.gz"
    with (
        target.open("wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz,
    ):
        gz.write(raw.getvalue())
    return target


class CompileError(RuntimeError):
    def __init__(self, command: Sequence[str], stderr: str) -> None:
        super().__init__(f"{' '.join(command)} failed:\n{stderr}")
        self.command = list(command)
        self.stderr = stderr


_KIND_FLAGS = {
    "shared": ("-shared", "-fPIC"),
    "object": ("-c", "-fPIC"),
    "program": ("-no-pie",),
    "pie": ("-fPIE", "-pie"),
}


def compile_shared_object(
    source: str,
    out: Path,
    *,
    lang: Literal["c", "c++"] = "c",
    flags: Sequence[str] = (),
    libs: Sequence[str] = (),
    kind: Literal["shared", "object", "program", "pie"] = "shared",
    compiler: str | None = None,
) -> Path:
    """A shared object by default; or a relocatable object (``gcc -c``), a program
    linked at a fixed address (an ``ET_EXEC`` executable), or a position-independent
    one (``ET_DYN`` with ``DF_1_PIE``). ``compiler``: another C compiler than gcc
    (``musl-gcc``)."""
    compiler = compiler or ("gcc" if lang == "c" else "g++")
    if shutil.which(compiler) is None:
        raise CompileError([compiler], f"{compiler} is not installed")
    suffix = ".c" if lang == "c" else ".cpp"
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # A relative source name keeps the temp directory out of the binary (STT_FILE).
        src = f"source{suffix}"
        Path(tmp, src).write_text(source)
        command = [
            compiler,
            *_KIND_FLAGS[kind],
            "-O2",
            *flags,
            "-o",
            str(out),
            src,
            *(f"-l{lib}" for lib in libs),
        ]
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CompileError(command, done.stderr)
    return out


def extension_suffix() -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert isinstance(suffix, str)
    return suffix


def build_extension_module(module: str, c_source: str, out_dir: Path) -> Path:
    """Compile a CPython extension module for the interpreter running the tests."""
    include = sysconfig.get_paths()["include"]
    return compile_shared_object(
        c_source, out_dir / f"{module}{extension_suffix()}", flags=["-I", include]
    )


def _c_string(value: str) -> str:
    # Octal escapes are at most three digits, so they never swallow a following character.
    parts = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if 0x20 <= byte < 0x7F and char not in '"\\?':
            parts.append(char)
        else:
            parts.append(f"\\{byte:03o}")
    return '"' + "".join(parts) + '"'


NEEDS_GLIBC_2_34 = """
#include <pthread.h>
/* Never called: referencing pthread_create links GLIBC_2.34 (libpthread merged into libc). */
int hostfit_needs_glibc_2_34(void) { pthread_t t; return pthread_create(&t, NULL, NULL, NULL); }
"""


def extension_source(module: str, value: str, extra: str = "") -> str:
    """C source of module `module` whose `answer()` returns `value`; `extra` is more C."""
    return f"""\
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) {{
    return PyUnicode_FromString({_c_string(value)});
}}

static PyMethodDef methods[] = {{
    {{"answer", answer, METH_NOARGS, NULL}},
    {{NULL, NULL, 0, NULL}},
}};

static struct PyModuleDef module_def = {{
    PyModuleDef_HEAD_INIT, "{module}", NULL, -1, methods,
}};

PyMODINIT_FUNC PyInit_{module}(void) {{
    return PyModule_Create(&module_def);
}}
{extra}"""


def interpreter_tag() -> str:
    """The most specific tag a wheel built for this test interpreter can carry."""
    abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return f"{abi}-{abi}-linux_{platform.machine()}"


def extension_wheel(
    name: str,
    version: str,
    out_dir: Path,
    *,
    module: str | None = None,
    value: str = "42",
    tag: str | None = None,
    build: str | None = None,
    files: dict[str, bytes] | None = None,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    extra_c: str = "",
) -> Path:
    """A wheel holding one compiled extension module whose answer() returns `value`.

    ``extra_c``: more C compiled into the module, e.g. `NEEDS_GLIBC_2_34`.
    """
    module = module or escape_name(name).lower()
    with tempfile.TemporaryDirectory() as tmp:
        source = extension_source(module, value, extra_c)
        so = build_extension_module(module, source, Path(tmp))
        members = {so.name: so.read_bytes(), **(files or {})}
    spec = WheelSpec(
        name,
        version,
        tag=tag or interpreter_tag(),
        build=build,
        files=members,
        requires_dist=list(requires_dist),
        requires_python=requires_python,
    )
    return build_wheel(spec, out_dir)
