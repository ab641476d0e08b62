"""Real binaries through analysis and `decide`: needs the report finds reach the verdict."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from proxy.analysis.wheel import analyze_wheel
from proxy.core.decide import Verdict, decide
from proxy.core.models import File
from proxy.core.policy import policy_table
from proxy.core.profile import parse_profile
from proxy.core.report import Report
from tests.support.wheels import CompileError, WheelSpec, build_wheel, compile_shared_object

LINUX = "cp311-cp311-manylinux_2_17_x86_64"
MODULE = "pkg/_ext.cpython-311-x86_64-linux-gnu.so"
HOST = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.35,glibcxx=3.4.30"
MUSL = "cp311-cp311-musllinux_1_2_x86_64"
MUSL_HOST = "python=3.11,impl=cp,arch=x86_64,libc=musl-1.2"
LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 123456\n"
)
# mach_header_64 of an x86_64 bundle (magic, cputype, cpusubtype, filetype MH_BUNDLE, ...)
MACHO = struct.pack("<8I", 0xFEEDFACF, 0x01000007, 3, 8, 0, 0, 0, 0) + b"\0" * 200


def analyze(tmp_path: Path, files: dict[str, bytes], tag: str = LINUX) -> Report:
    wheel = build_wheel(WheelSpec("pkg", "1.0", tag=tag, files=files), tmp_path)
    with wheel.open("rb") as source:
        return analyze_wheel(source, wheel.name, "0" * 64)


def verdict(report: Report, profile: str) -> Verdict:
    file = File(
        filename=report.filename, url=f"https://upstream.invalid/{report.filename}", hashes={}
    )
    return decide(file, report, parse_profile(profile, "url"))


def test_a_libgcc_version_newer_than_the_hosts_gcc_hides_the_wheel(tmp_path: Path) -> None:
    # GCC 12 puts half-precision conversions in libgcc_s under GCC_12.0.0.
    source = (
        "_Float16 half(double x) { return (_Float16)x; }\nint PyInit__ext(void) { return 0; }\n"
    )
    try:
        built = compile_shared_object(source, tmp_path / "_ext.so", flags=["-shared-libgcc"])
    except CompileError as exc:
        pytest.skip(f"no _Float16 here: {exc}")
    report = analyze(tmp_path, {MODULE: built.read_bytes()})
    if report.requires.gcc != "12.0.0":
        pytest.skip(f"this compiler links GCC_{report.requires.gcc}, not GCC_12.0.0")
    gcc8 = verdict(report, "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28,glibcxx=3.4.25")
    assert [r.kind for r in gcc8.reasons] == ["gcc"]
    assert "GCC_12.0.0" in gcc8.reasons[0].message
    assert verdict(report, HOST).keep  # GCC 12's libstdc++
    assert verdict(report, "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28").keep


def test_a_glibc_version_name_no_table_knows_hides_the_wheel(tmp_path: Path) -> None:
    try:
        built = compile_shared_object(
            "#include <sys/random.h>\nint f(void *b) { return (int)getrandom(b, 1, 0); }\n",
            tmp_path / "_ext.so",
        )
    except CompileError as exc:
        pytest.skip(str(exc))
    data = built.read_bytes()
    assert b"GLIBC_2.25\0" in data  # in .dynstr (and .strtab: both replaced)
    # As a newer linker adds a name (GLIBC_ABI_GNU2_TLS) before any table here lists it.
    report = analyze(tmp_path, {MODULE: data.replace(b"GLIBC_2.25\0", b"GLIBC_ABIX\0")})
    assert report.status == "ok", report.reason
    past = policy_table().glibc_after_known()
    assert report.requires.glibc == f"{past[0]}.{past[1]}"
    assert report.requires.glibc_unknown == ("GLIBC_ABIX",)
    hidden = verdict(report, HOST)
    assert [r.kind for r in hidden.reasons] == ["glibc"]
    assert hidden.reasons[0].message.startswith("glibc: needs GLIBC_ABIX, which no glibc")
    assert Report.from_json(report.to_json()) == report


@pytest.mark.parametrize("member", [MODULE, "pkg/_ext.abi3.so", "pkg/sub/_ext.abi3.so"])
@pytest.mark.parametrize(("what", "data"), [("git-lfs", LFS_POINTER), ("mach-o", MACHO)])
def test_an_extension_module_that_is_no_elf_file_hides_the_wheel(
    tmp_path: Path, member: str, what: str, data: bytes
) -> None:
    """dlopen: "invalid ELF header", on every Linux host."""
    report = analyze(tmp_path, {member: data, "pkg/__init__.py": b""})
    assert report.status == "ok", report.reason
    assert report.requires.not_elf == (member,)
    hidden = verdict(report, HOST)
    assert [r.kind for r in hidden.reasons] == ["native"]
    assert member in hidden.reasons[0].message
    assert Report.from_json(report.to_json()) == report


def test_a_library_a_module_loads_that_is_no_elf_file_hides_the_wheel(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    libs = tmp_path / "libs"
    compile_shared_object(
        "int dep(void) { return 1; }\n", libs / "libdep.so", flags=["-Wl,-soname,libdep.so.1"]
    )
    module = compile_shared_object(
        "int dep(void);\nint PyInit__ext(void) { return dep(); }\n",
        tmp_path / "_ext.so",
        flags=["-L", str(libs), "-Wl,-rpath,$ORIGIN/../pkg.libs"],
        libs=["dep"],
    )
    files = {MODULE: module.read_bytes(), "pkg.libs/libdep.so.1": LFS_POINTER}
    report = analyze(tmp_path, files)
    assert report.requires.not_elf == ("pkg.libs/libdep.so.1",)
    assert [r.kind for r in verdict(report, HOST).reasons] == ["native"]


def test_modules_of_other_systems_and_pure_wheels_are_not_judged_so(tmp_path: Path) -> None:
    # A macOS module in a Linux wheel: no Linux import names it.
    linux = analyze(tmp_path / "l", {"pkg/_mac.cpython-311-darwin.so": MACHO})
    assert linux.requires.not_elf is None
    # A pure wheel's binaries may be for other systems (`proxy.core.select` judges those).
    pure = analyze(tmp_path / "p", {"pkg/_ext.so": MACHO}, "py3-none-any")
    assert pure.requires.not_elf is None
    assert verdict(pure, HOST).keep


def test_several_such_members_are_named_in_one_reason(tmp_path: Path) -> None:
    files = {f"pkg/_m{i}.abi3.so": LFS_POINTER for i in range(5)}
    report = analyze(tmp_path, files)
    assert report.requires.not_elf == tuple(sorted(files))
    message = verdict(report, HOST).reasons[0].message
    assert "and 2 more" in message


def test_a_wheel_whose_modules_are_all_built_for_another_python_is_hidden(tmp_path: Path) -> None:
    """Tagged abi3 (a build that went wrong, or a retag), but its one module is named for
    Python 3.8 alone: this interpreter's import does not find it."""
    module = compile_shared_object("int PyInit__ext(void) { return 0; }\n", tmp_path / "_e.so")
    other = f"cpython-{sys.version_info[0]}{sys.version_info[1] - 1}"
    member = f"pkg/_ext.{other}-x86_64-linux-gnu.so"
    files = {member: module.read_bytes(), "pkg/__init__.py": b""}
    report = analyze(tmp_path / "a", files, "cp38-abi3-manylinux_2_17_x86_64")
    assert report.requires.module_abis == (other,)
    assert Report.from_json(report.to_json()) == report
    here = f"python={sys.version_info[0]}.{sys.version_info[1]},impl=cp,arch=x86_64"
    hidden = verdict(report, here)
    assert [r.kind for r in hidden.reasons] == ["native"]
    assert other in hidden.reasons[0].message
    # The import this interpreter would make: the module is not found at all.
    assert "No module named 'pkg._ext'" in _import_error(tmp_path / "a", member, module)
    # Named for this interpreter, the same wheel is kept (and the import finds the file:
    # its made-up PyInit fails it then, in another way).
    mine = "pkg/_ext" + EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"
    kept = analyze(tmp_path / "b", {mine: module.read_bytes(), "pkg/__init__.py": b""})
    assert kept.requires.module_abis is not None  # ("cpython-311",)
    assert verdict(kept, here).keep
    assert "No module named" not in _import_error(tmp_path / "b", mine, module)


def _import_error(where: Path, member: str, module: Path) -> str:
    """What ``import pkg._ext`` says with ``member`` installed."""
    site = where / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_bytes(b"")
    shutil.copy(module, site / member)
    done = subprocess.run(
        [sys.executable, "-c", "import pkg._ext"],
        env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    return done.stderr


def test_a_module_built_for_another_system_hides_the_wheel(tmp_path: Path) -> None:
    """A module whose ELF header names FreeBSD (EI_OSABI 9) in a Linux wheel: glibc's
    loader refuses it, "ELF file OS ABI invalid", on every Linux host."""
    built = compile_shared_object("int PyInit__ext(void) { return 0; }\n", tmp_path / "_e.so")
    data = bytearray(built.read_bytes())
    assert data[7] in (0, 3)  # as gcc writes it: no system named, or Linux
    data[7] = 9
    freebsd = tmp_path / "_freebsd.so"
    freebsd.write_bytes(bytes(data))
    with pytest.raises(OSError, match="OS ABI"):
        ctypes.CDLL(str(freebsd))  # this machine's loader, on the very bytes
    report = analyze(tmp_path / "w", {MODULE: bytes(data), "pkg/__init__.py": b""})
    assert report.requires.elf_systems == ("freebsd",)
    assert Report.from_json(report.to_json()) == report
    hidden = verdict(report, HOST)
    assert [r.message for r in hidden.reasons] == [
        "native: binaries an import loads are built for freebsd: glibc's loader refuses them"
    ]
    fine = analyze(tmp_path / "f", {MODULE: built.read_bytes(), "pkg/__init__.py": b""})
    assert fine.requires.elf_systems is None and verdict(fine, HOST).keep


@pytest.mark.parametrize(
    ("osabi", "named"), [(1, "hp-ux"), (97, "arm"), (64, "arm-aeabi"), (42, "EI_OSABI 42")]
)
def test_a_module_whose_header_names_a_system_glibc_refuses_hides_the_wheel(
    tmp_path: Path, osabi: int, named: str
) -> None:
    """Every EI_OSABI but System V (0) and GNU (3), named in the gABI or not: glibc's
    loader accepts only those two, on every machine."""
    built = compile_shared_object("int PyInit__ext(void) { return 0; }\n", tmp_path / "_e.so")
    data = bytearray(built.read_bytes())
    data[7] = osabi
    patched = tmp_path / "_other.so"
    patched.write_bytes(bytes(data))
    with pytest.raises(OSError, match="OS ABI invalid"):
        ctypes.CDLL(str(patched))
    report = analyze(tmp_path / "w", {MODULE: bytes(data), "pkg/__init__.py": b""})
    assert report.requires.elf_systems == (named,)
    assert [r.kind for r in verdict(report, HOST).reasons] == ["native"]
    data[7] = 3  # GNU: what the linker writes for a binary with IFUNC symbols
    gnu = tmp_path / "_gnu.so"
    gnu.write_bytes(bytes(data))
    ctypes.CDLL(str(gnu))
    kept = analyze(tmp_path / "g", {MODULE: bytes(data), "pkg/__init__.py": b""})
    assert kept.requires.elf_systems is None and verdict(kept, HOST).keep


def test_a_relocatable_object_named_like_a_module_hides_the_wheel(tmp_path: Path) -> None:
    """An object file (``gcc -c``, ET_REL) under a module's name: neither loader maps it."""
    source = "int PyInit__ext(void) { return 0; }\n"
    obj = compile_shared_object(source, tmp_path / "_ext.o", kind="object")
    with pytest.raises(OSError, match="only ET_DYN and ET_EXEC can be loaded"):
        ctypes.CDLL(str(obj))
    files = {MODULE: obj.read_bytes(), "pkg/__init__.py": b""}
    for tag, host in ((LINUX, HOST), (MUSL, MUSL_HOST)):
        report = analyze(tmp_path / tag, files, tag)
        assert report.status == "ok", report.reason
        assert report.requires.not_elf == (MODULE,)
        assert Report.from_json(report.to_json()) == report
        assert [r.message for r in verdict(report, host).reasons] == [
            f"native: an import loads {MODULE}, which no Linux loader maps (no ELF shared"
            " object): the load fails on every Linux host"
        ]
    # An object file under any other name is no module: nothing is judged of it.
    beside = analyze(tmp_path / "b", {"pkg/_ext.o": obj.read_bytes(), "pkg/__init__.py": b""})
    assert beside.requires.not_elf is None and verdict(beside, HOST).keep


def test_a_musllinux_wheel_linked_against_glibc_is_hidden_from_pip_on_musl(tmp_path: Path) -> None:
    """pip on Alpine tells no libc; a wheel tagged only musllinux installs on musl alone, so
    a glibc-linked module in it fails to import there (no libc.so.6)."""
    source = "#include <stdlib.h>\nint PyInit__ext(void) { return rand(); }\n"
    module = compile_shared_object(source, tmp_path / "_ext.so")
    report = analyze(tmp_path / "w", {MODULE: module.read_bytes()}, MUSL)
    assert report.requires.libc == "glibc"
    untold = verdict(report, "python=3.11,impl=cp,arch=x86_64")
    assert [(r.kind, r.message, r.assumed) for r in untold.reasons] == [
        ("libc", "libc: needs glibc; its tags admit musl only", True)
    ]
    # Tagged for glibc, it is pip's own tags that keep it from a musl host.
    tagged = analyze(tmp_path / "g", {MODULE: module.read_bytes()})
    assert verdict(tagged, "python=3.11,impl=cp,arch=x86_64").keep


def test_an_executable_an_import_loads_hides_the_wheel_from_glibc_hosts(tmp_path: Path) -> None:
    """A program linked at a fixed address (ET_EXEC) under a module's name: glibc's loader
    refuses it, "cannot dynamically load executable". A musl host is not judged on this:
    musl's loader maps some executables (one with a dynamic section, at a free address)."""
    source = "int PyInit__ext(void) { return 0; }\nvoid _start(void) {}\n"
    # No libc, so that one program stands in a glibc wheel and in a musl one.
    program = compile_shared_object(source, tmp_path / "prog", kind="program", flags=["-nostdlib"])
    with pytest.raises(OSError, match="cannot dynamically load executable"):
        ctypes.CDLL(str(program))
    report = analyze(tmp_path / "w", {MODULE: program.read_bytes(), "pkg/__init__.py": b""})
    assert report.requires.executables == (MODULE,)
    assert Report.from_json(report.to_json()) == report
    assert [r.message for r in verdict(report, HOST).reasons] == [
        f"native: an import loads {MODULE}, linked as an executable: glibc's loader loads no"
        " executable beside the program"
    ]
    on_musl = analyze(tmp_path / "m", {MODULE: program.read_bytes()}, MUSL)
    assert on_musl.requires.executables == (MODULE,) and verdict(on_musl, MUSL_HOST).keep
    # The same program shipped as a program, beside a real module: no import loads it.
    module = compile_shared_object(source, tmp_path / "_ext.so")
    files = {MODULE: module.read_bytes(), "pkg/bin/tool": program.read_bytes()}
    shipped = analyze(tmp_path / "s", files)
    assert shipped.requires.executables is None and verdict(shipped, HOST).keep


def test_a_position_independent_executable_an_import_loads_hides_the_wheel_from_glibc_hosts(
    tmp_path: Path,
) -> None:
    """A PIE under a module's name is an ET_DYN object like any library, but glibc's loader
    (2.30 and newer, 2.28 and 2.29 as distributions ship them) reads its DF_1_PIE flag and
    refuses it: "cannot dynamically load
    position-independent executable". musl's loader maps it."""
    source = "int PyInit__ext(void) { return 0; }\nvoid _start(void) {}\n"
    # No libc: the wheel needs no glibc version of its own.
    program = compile_shared_object(source, tmp_path / "pie", kind="pie", flags=["-nostdlib"])
    with pytest.raises(OSError, match="cannot dynamically load position-independent executable"):
        ctypes.CDLL(str(program))
    report = analyze(tmp_path / "w", {MODULE: program.read_bytes(), "pkg/__init__.py": b""})
    assert report.requires.pie_executables == (MODULE,)
    assert [(e.pie, e.no_dlopen) for e in report.elf_files] == [(True, False)]
    assert report.requires.executables is None  # not ET_EXEC
    assert Report.from_json(report.to_json()) == report
    assert [r.message for r in verdict(report, HOST).reasons] == [
        f"native: an import loads {MODULE}, linked as a position-independent executable:"
        " glibc's loader refuses those (2.28 and newer)"
    ]
    assert verdict(report, HOST.replace("glibc-2.35", "glibc-2.27")).keep
    assert shutil.which("musl-gcc"), "musl-gcc is missing: apt-get install musl-tools"
    on_musl = compile_shared_object(
        source, tmp_path / "mpie", kind="pie", flags=["-nostdlib"], compiler="musl-gcc"
    )
    probe = compile_shared_object(DLOPEN, tmp_path / "dlopen", kind="program", compiler="musl-gcc")
    loaded = subprocess.run([probe, on_musl], capture_output=True, text=True, check=False)
    assert loaded.stdout == "loaded\n", loaded
    musl = analyze(tmp_path / "m", {MODULE: on_musl.read_bytes()}, MUSL)
    assert musl.requires.pie_executables == (MODULE,) and verdict(musl, MUSL_HOST).keep
    # The same program shipped as a program, beside a real module: no import loads it.
    module = compile_shared_object(source, tmp_path / "_ext.so")
    shipped = analyze(
        tmp_path / "s", {MODULE: module.read_bytes(), "pkg/bin/tool": program.read_bytes()}
    )
    assert shipped.requires.pie_executables is None and verdict(shipped, HOST).keep


def test_a_library_linked_nodlopen_that_an_import_loads_hides_the_wheel_from_glibc_hosts(
    tmp_path: Path,
) -> None:
    """``ld -z nodlopen`` (DF_1_NOOPEN): glibc's loader refuses every dlopen() of the
    object, and so one of a module that needs it: "shared object cannot be dlopen()ed".
    musl's loader does not read the flag."""
    nodlopen = ["-Wl,-z,nodlopen", "-Wl,-soname,libdep.so"]
    library = compile_shared_object(
        "int dep(void) { return 1; }\n", tmp_path / "libdep.so", flags=nodlopen
    )
    module = compile_shared_object(
        "int dep(void);\nint PyInit__ext(void) { return dep(); }\n",
        tmp_path / "_ext.so",
        flags=[f"-L{tmp_path}", "-Wl,-rpath,$ORIGIN"],
        libs=["dep"],
    )
    with pytest.raises(OSError, match="shared object cannot be dlopen"):
        ctypes.CDLL(str(module))
    files = {MODULE: module.read_bytes(), "pkg/libdep.so": library.read_bytes()}
    report = analyze(tmp_path / "w", files)
    assert report.requires.no_dlopen == ("pkg/libdep.so",)
    assert [(e.path, e.no_dlopen) for e in report.elf_files] == [
        (MODULE, False),
        ("pkg/libdep.so", True),
    ]
    assert Report.from_json(report.to_json()) == report
    old = HOST.replace("glibc-2.35", "glibc-2.17")
    assert [r.message for r in verdict(report, old).reasons] == [
        "native: an import loads pkg/libdep.so, marked never to be loaded by dlopen"
        " (-z nodlopen): glibc's loader refuses it"
    ]
    assert shutil.which("musl-gcc"), "musl-gcc is missing: apt-get install musl-tools"
    on_musl = compile_shared_object(
        "int dep(void) { return 1; }\n",
        tmp_path / "m" / "libdep.so",
        flags=nodlopen,
        compiler="musl-gcc",
    )
    probe = compile_shared_object(DLOPEN, tmp_path / "dlopen", kind="program", compiler="musl-gcc")
    loaded = subprocess.run([probe, on_musl], capture_output=True, text=True, check=False)
    assert loaded.stdout == "loaded\n", loaded
    musl = analyze(
        tmp_path / "mw", {MODULE: module.read_bytes(), "pkg/libdep.so": on_musl.read_bytes()}, MUSL
    )
    assert musl.requires.no_dlopen == ("pkg/libdep.so",)
    assert "native" not in [r.kind for r in verdict(musl, MUSL_HOST).reasons]
    # Shipped beside a module that does not need it: no import loads it.
    plain = compile_shared_object("int PyInit__ext(void) { return 0; }\n", tmp_path / "plain.so")
    alone = analyze(
        tmp_path / "a", {MODULE: plain.read_bytes(), "pkg/libdep.so": library.read_bytes()}
    )
    assert alone.requires.no_dlopen is None and verdict(alone, HOST).keep


IE_TLS = (
    'static __thread int counter __attribute__((tls_model("initial-exec")));\n'
    "int PyInit__ext(void) { return ++counter; }\n"
)
DLOPEN = (
    "#include <dlfcn.h>\n#include <stdio.h>\n"
    "int main(int argc, char **argv) {\n"
    '  if (dlopen(argv[1], RTLD_NOW)) { puts("loaded"); return 0; }\n'
    "  puts(dlerror()); return 1;\n}\n"
)


def test_a_module_with_initial_exec_tls_of_its_own_is_hidden_from_musl_hosts(
    tmp_path: Path,
) -> None:
    """A module that reaches its own thread-local variable by the initial-exec model (as
    mimalloc does): musl's loader refuses it under dlopen, whatever the variable's size;
    glibc's takes it from its static TLS surplus."""
    assert shutil.which("musl-gcc"), "musl-gcc is missing: apt-get install musl-tools"
    module = compile_shared_object(IE_TLS, tmp_path / "_ie.so", compiler="musl-gcc")
    probe = compile_shared_object(DLOPEN, tmp_path / "dlopen", kind="program", compiler="musl-gcc")
    loaded = subprocess.run([probe, module], capture_output=True, text=True, check=False)
    assert "initial-exec TLS resolves to dynamic definition" in loaded.stdout, loaded
    report = analyze(tmp_path / "m", {MODULE: module.read_bytes()}, MUSL)
    assert report.requires.initial_exec_tls == (MODULE,)
    assert [e.initial_exec_tls for e in report.elf_files] == [True]
    assert Report.from_json(report.to_json()) == report
    assert [r.message for r in verdict(report, MUSL_HOST).reasons] == [
        f"native: an import loads {MODULE} with initial-exec TLS of its own, which musl's"
        " loader refuses under dlopen (host has musl 1.2)"
    ]
    # pip on musl tells no libc: a musllinux_1_2 wheel installs on musl 1.2 and newer only.
    untold = verdict(report, "python=3.11,impl=cp,arch=x86_64")
    assert [r.kind for r in untold.reasons] == ["native"]
    # musl 1.1 may be older than 1.1.20, which began refusing: not judged.
    older = analyze(tmp_path / "o", {MODULE: module.read_bytes()}, MUSL.replace("1_2", "1_1"))
    assert verdict(older, MUSL_HOST.replace("musl-1.2", "musl-1.1")).keep
    # The usual (global-dynamic) model loads.
    dynamic = IE_TLS.replace(' __attribute__((tls_model("initial-exec")))', "")
    usual = compile_shared_object(dynamic, tmp_path / "_gd.so", compiler="musl-gcc")
    assert "loaded" in subprocess.run([probe, usual], capture_output=True, text=True).stdout
    fine = analyze(tmp_path / "g", {MODULE: usual.read_bytes()}, MUSL)
    assert fine.requires.initial_exec_tls is None and verdict(fine, MUSL_HOST).keep
    # glibc loads the initial-exec module (a file linking glibc is not read for it).
    linked = "#include <stdio.h>\n" + IE_TLS.replace("++counter;", '++counter + puts("");')
    glibc = compile_shared_object(linked, tmp_path / "_glibc_ie.so")
    ctypes.CDLL(str(glibc))
    on_glibc = analyze(tmp_path / "l", {MODULE: glibc.read_bytes()})
    assert on_glibc.requires.initial_exec_tls is None and verdict(on_glibc, HOST).keep


def test_a_module_of_a_64_bit_machines_32_bit_abi_hides_the_wheel(tmp_path: Path) -> None:
    """An x32 module (ELFCLASS32 for x86-64) in an x86_64 wheel: a 64-bit process's
    loader says "wrong ELF class: ELFCLASS32"."""
    x32 = compile_shared_object(
        "int PyInit__ext(void) { return 0; }\n", tmp_path / "_x32.so", flags=["-mx32", "-nostdlib"]
    )
    with pytest.raises(OSError, match="wrong ELF class"):
        ctypes.CDLL(str(x32))  # this machine's loader, on the very bytes
    report = analyze(tmp_path / "w", {MODULE: x32.read_bytes(), "pkg/__init__.py": b""})
    assert [e.machine for e in report.elf_files] == ["x32"]
    assert report.requires.machines == ("x32",)
    hidden = verdict(report, HOST)
    assert [r.message for r in hidden.reasons] == [
        "native: binaries an import loads are for x32, host is x86_64"
    ]
