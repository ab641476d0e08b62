"""What analysis learned about one wheel: the report, keyed by the wheel's sha256.

Reports are immutable values. Their JSON form is a contract (DESIGN.md, "Report"):
keys may be added but never renamed. Versions are dotted strings ("2.17", "3.4.19").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from proxy.core.typed import holds_types

# Bump whenever analysis could produce a different report for the same bytes;
# stored reports from an older analyzer are then recomputed.
ANALYZER_VERSION = 17

Status = Literal["ok", "unanalysable"]
NativeFormat = Literal["elf", "pe", "macho"]


@dataclass(frozen=True, slots=True)
class ElfFile:
    path: str
    machine: str
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    version_needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    execstack: bool = False
    x86_isa_needed: int | None = None  # x86-64 micro-architecture level (1-4), from the ISA note
    gpu_sms: tuple[str, ...] = ()  # "8.0", "9.0" ... from an embedded CUDA fat binary
    elf_class: int = 64  # 32 or 64
    interpreter: str | None = None  # PT_INTERP of an executable
    gpu_ptx: tuple[str, ...] = ()  # PTX virtual architectures, JIT-compiled on newer GPUs
    # Reaches thread-local variables of its own by the initial-exec model (a TPOFF
    # relocation resolved within the file): musl's loader refuses that under dlopen.
    # Read for files that do not link glibc (glibc's loader takes them).
    initial_exec_tls: bool = False
    # DT_FLAGS_1 says DF_1_PIE: a position-independent executable, which glibc's loader
    # (2.28 and newer, as distributions ship them) refuses to dlopen().
    pie: bool = False
    # DT_FLAGS_1 says DF_1_NOOPEN (ld -z nodlopen): glibc's loader refuses to dlopen() it.
    no_dlopen: bool = False


@dataclass(frozen=True, slots=True)
class NativeFile:
    """A native binary of any format: what it is and where it would load.

    ``os`` is "linux" (or another ELF OS named by EI_OSABI), "windows", "macos", or
    "dotnet" for a .NET (CLI) assembly: a PE file with a CLR runtime header, which a
    .NET runtime (Mono, .NET) loads on Linux as on Windows. ``machine`` is spelt as
    each platform's tools spell it ("x86_64", "aarch64" for ELF and PE, "arm64" for
    Mach-O), several joined by "+" for a fat Mach-O file. A .NET assembly's machine is
    its PE header's as read: "i386" for the usual AnyCPU assembly, which runs on any
    machine; a mixed-mode (C++/CLI) assembly is "dotnet" too, though its native code
    ties it to its machine.
    """

    path: str
    format: NativeFormat
    os: str
    machine: str


@dataclass(frozen=True, slots=True)
class Requires:
    """What the host must provide. ``None`` where the wheel needs nothing of that kind."""

    libc: Literal["glibc", "musl"] | None = None
    glibc: str | None = None
    glibcxx: str | None = None
    cxxabi: str | None = None
    gcc: str | None = None
    cuda_major: int | None = None
    gpu_sms: tuple[str, ...] | None = None
    x86_64_level: int | None = None
    execstack: bool | None = None
    gpu_ptx: tuple[str, ...] | None = None
    # True: a binary the wheel loads (`proxy.core.aggregate`) needs the NVIDIA driver's own
    # libcuda.so.1, which no wheel can bring.
    nvidia_driver: bool | None = None
    # The machines of the binaries an import loads (its extension modules and the
    # libraries they load from the wheel), as wheel tags spell them: a host of another
    # machine loads none of them, whatever the wheel's tag claims.
    machines: tuple[str, ...] | None = None
    # True: the binaries an import loads link both glibc and musl; no host has both.
    mixed_libc: bool | None = None
    # Named GLIBC_ versions no table knows (``GLIBC_PRIVATE`` aside); ``glibc`` is then
    # the first release newer than every one the tables know, none of which has them.
    glibc_unknown: tuple[str, ...] | None = None
    # Members of a Linux wheel an import loads that no Linux loader maps: no ELF file (a
    # Git LFS pointer, a Mach-O file named like a Linux module), or an ELF file of a type
    # no loader maps (a relocatable object, "only ET_DYN and ET_EXEC can be loaded").
    not_elf: tuple[str, ...] | None = None
    # The interpreters the extension modules of a Linux wheel are built for ("abi3",
    # "cpython-311", "pypy310-pp73"), when every module's name says: an interpreter of
    # another version finds none of them, and the import fails (ModuleNotFoundError).
    module_abis: tuple[str, ...] | None = None
    # The other systems (EI_OSABI: "freebsd") a Linux wheel's binaries an import loads are
    # built for: glibc's loader refuses them (musl's does not read the header's system).
    elf_systems: tuple[str, ...] | None = None
    # The executables (ET_EXEC, linked at a fixed address) among the binaries an import
    # of a Linux wheel loads: glibc's loader refuses them, "cannot dynamically load
    # executable".
    executables: tuple[str, ...] | None = None
    # The binaries an import of a Linux wheel loads that reach thread-local variables of
    # their own by the initial-exec model: musl's loader refuses them under dlopen,
    # "initial-exec TLS resolves to dynamic definition".
    initial_exec_tls: tuple[str, ...] | None = None
    # The position-independent executables (DF_1_PIE) among the binaries an import of a
    # Linux wheel loads: glibc's loader (2.28 and newer) refuses them, "cannot dynamically
    # load position-independent executable".
    pie_executables: tuple[str, ...] | None = None
    # The binaries an import of a Linux wheel loads that are marked never to be opened by
    # dlopen (DF_1_NOOPEN, ld -z nodlopen): glibc's loader refuses them, "shared object
    # cannot be dlopen()ed".
    no_dlopen: tuple[str, ...] | None = None


_REQUIRES_KEYS = frozenset(Requires.__dataclass_fields__)
_ELF_KEYS = frozenset(ElfFile.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Report:
    filename: str
    sha256: str
    analyzer_version: int = ANALYZER_VERSION
    status: Status = "ok"
    reason: str | None = None
    elf_files: tuple[ElfFile, ...] = ()
    requires: Requires = field(default_factory=Requires)
    bundled_libraries: tuple[str, ...] = ()
    external_libraries: tuple[str, ...] = ()
    derived_platform_tag: str | None = None
    overclaims: bool = False  # the wheel's own platform tag promises more than its binaries allow
    # When the stored report was made (UTC, ISO 8601), set by the edge that stored it;
    # None for a report made on the spot (hostfit inspect). Not a fact about the wheel.
    made_at: str | None = None
    # Every native binary, ELF or not, in member order; the ELF ones are also in elf_files.
    native_files: tuple[NativeFile, ...] = ()
    notes: tuple[str, ...] = ()  # members skipped, and why (a ".so" that is no binary)
    # Where the bytes analysed came from, set by the edge: "file", the cached file whose
    # sha256 was checked; "url", read by URL (ranges), which nothing ties to the sha256
    # the report is kept under. None: made on the spot, or stored before this was kept.
    made_from: Literal["file", "url"] | None = None

    @classmethod
    def unanalysable(cls, filename: str, sha256: str, reason: str) -> Report:
        return cls(filename=filename, sha256=sha256, status="unanalysable", reason=reason)

    def same_facts(self, other: Report) -> bool:
        """Whether two reports of a wheel say the same of it, however and when made."""
        return replace(self, made_at=None, made_from=None) == replace(
            other, made_at=None, made_from=None
        )

    def native_platforms(self) -> frozenset[tuple[str, str]]:
        """The (os, machine) pairs the wheel's native binaries load on; a fat file gives one
        pair per slice. Empty for a wheel without binaries (or an unanalysable one)."""
        return frozenset(
            (native.os, machine)
            for native in self.native_files
            for machine in native.machine.split("+")
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["elf_files"] = [
            {**elf, "version_needs": {lib: list(v) for lib, v in elf["version_needs"].items()}}
            for elf in data["elf_files"]
        ]
        result: dict[str, Any] = _lists(data)
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        # Keys a newer analyzer added are left out, here and in ``requires``: this
        # version judges by what it knows (a rollback reads the newer reports instead of
        # analysing every wheel again).
        elves = tuple(
            ElfFile(
                **{
                    **_tuples({k: v for k, v in e.items() if k in _ELF_KEYS}),
                    "version_needs": {k: tuple(v) for k, v in e.get("version_needs", {}).items()},
                }
            )
            for e in data.get("elf_files", ())
        )
        req = {k: v for k, v in (data.get("requires") or {}).items() if k in _REQUIRES_KEYS}
        for key in (
            "gpu_sms",
            "gpu_ptx",
            "machines",
            "glibc_unknown",
            "not_elf",
            "module_abis",
            "elf_systems",
            "executables",
            "initial_exec_tls",
            "pie_executables",
            "no_dlopen",
        ):
            if isinstance(req.get(key), list):
                req[key] = tuple(req[key])
        # Reports from before native_files (analyzer version 1) have no such key.
        natives = tuple(
            NativeFile(path=n["path"], format=n["format"], os=n["os"], machine=n["machine"])
            for n in data.get("native_files", ())
        )
        known = {f for f in cls.__dataclass_fields__}
        special = {"elf_files", "requires", "native_files"}
        rest = {k: v for k, v in data.items() if k in known and k not in special}
        return cls(**_tuples(rest), elf_files=elves, requires=Requires(**req), native_files=natives)


def well_typed(report: Report) -> bool:
    """Whether every field of the report (and of its parts) holds what its type says: a
    report read back from a store another version or a fault wrote can hold anything,
    and would fail only later, deciding a page."""
    parts: list[Any] = [report, report.requires, *report.elf_files, *report.native_files]
    return all(map(holds_types, parts))


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def _tuples(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
