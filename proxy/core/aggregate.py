"""From the ELF files of one wheel to what the wheel needs from its host.

Pure: the wheel's loadable ELF files in, ``Requires``, the bundled/external split and
the derived platform tag out. A ``DT_NEEDED`` entry is bundled when the loader would
find a loadable ELF file of the wheel for it: through an ``$ORIGIN`` RPATH/RUNPATH (how
auditwheel points at ``<name>.libs/``), or because the wheel ships a library of that
SONAME, which the loader reuses once it is loaded. Only what stays external counts
towards the host's requirements. Two exceptions follow the loader, which reuses a
library of the same SONAME already in the process before it searches anything: glibc's
own libraries (``libc.so.6``, ``libm.so.6``, the dynamic loader ...) are always the
host's, the interpreter having loaded them first; and libstdc++ and libgcc_s are the
wheel's only where one of its binaries loads the wheel's copy through its run path,
never because a file of that SONAME lies somewhere in it (the loader would find the
host's). A member named like a module an import loads (or found by a loaded binary's
run path) that no loader maps, a Git LFS pointer, a Mach-O file or a relocatable
object, fails that import on every Linux host: `Requires.not_elf` names it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from proxy.core.dotted import dotted, parse_dotted
from proxy.core.frontier import is_linux_platform
from proxy.core.gpu import target_order
from proxy.core.policy import PolicyTable, is_numeric, split_version_name
from proxy.core.report import ElfFile, Requires
from proxy.core.variants import split_label

# Runtime libraries whose SONAME carries the CUDA major they belong to.
_CUDA_RUNTIME = re.compile(r"^lib(?:cudart|cublas|cublasLt|nvrtc)\.so\.(\d+)(?:\.|$)")
# The NVIDIA driver's user-space library: installed with the driver, never by a wheel.
_LIBCUDA = re.compile(r"^libcuda\.so(?:\.\d+)*$")
# A library by name (lib*.so*), not a Python extension module (lib.cpython-311-….so).
_LIBRARY = re.compile(r"^lib(?![^/]*\.(?:cpython-|abi3\.|pypy))[^/]*\.so(?:\.[0-9.]+)?$")
_SHARED_OBJECT = re.compile(r"\.so(?:\.[0-9.]+)?$")
# A module a Linux interpreter imports, named with its tag: an identifier, then abi3 or
# a Linux one (EXTENSION_SUFFIXES: "cpython-311-x86_64-linux-gnu", "pypy310-pp73-…-linux-
# gnu", a bare "cpython-34m" of old). "cpython-311-darwin" is a macOS module's.
_TAGGED_MODULE = re.compile(r"^[^\W\d]\w*\.(?:abi3|cpython-\d+[a-z]*|[\w-]*linux[\w-]*)\.so$")
# The module tags `Requires.module_abis` reads, whole, as Linux interpreters' suffixes
# spell them: "cpython-311-x86_64-linux-gnu" (flags after the version: "cpython-37m",
# "cpython-313t"), "pypy310-pp73-x86_64-linux-gnu", "abi3". The group is the interpreter
# part; the machine after it is the machine checks' business.
_KNOWN_MODULE_TAG = re.compile(r"(cpython-\d+[a-z]*|pypy\d+-pp\d+)-[\w-]*linux[\w-]*|(abi3)")
_MUSL_LIBC = re.compile(r"^(?:libc\.musl-[^/]+\.so\.1|libc\.so)$")
_GLIBC_LIBS = re.compile(
    r"^(?:libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1"
    r"|ld-linux[^/]*\.so\.\d+|ld64\.so\.\d+)$"
)
# Libraries the process may hold already, the host's, under the SONAME a wheel's copy has.
_HOST_FIRST = re.compile(r"^(?:libstdc\+\+\.so\.6|libgcc_s\.so\.1)$")
# libgcc_s by its own name or as auditwheel grafts it, once or again (libgcc_s-0bf60adc.so.1,
# libgcc_s-2d945d6c-767fb991.so.1).
_LIBGCC_S = re.compile(r"^libgcc_s(?:-[0-9a-f]+)*\.so\.1$")


@dataclass(frozen=True, slots=True)
class Summary:
    requires: Requires
    bundled_libraries: tuple[str, ...]
    external_libraries: tuple[str, ...]
    derived_platform_tag: str | None
    overclaims: bool


def summarize(
    filename: str,
    elves: Sequence[ElfFile],
    policies: PolicyTable,
    not_elf: Collection[str] = (),
    systems: Mapping[str, str] | None = None,
    executables: Collection[str] = (),
) -> Summary:
    """``elves``: the wheel's loadable ELF files, all the loader can find in it (a member
    of another kind by a needed name is no library: the need stays the host's).
    ``not_elf``: the members named like shared objects that no loader maps (no ELF file,
    or a relocatable object).
    ``systems``: the ELF files built for another system than Linux, by path, with the
    system their header names (EI_OSABI: "freebsd").
    ``executables``: the paths of the ELF files that are executables (``ET_EXEC``)."""
    members = {elf.path for elf in elves}
    provided = _provided_by_name(elves, members)
    bundled: set[str] = set()
    external: set[str] = set()
    external_versions: list[str] = []
    for elf in elves:
        outside = set()
        for name in elf.needed:
            if resolve(elf, name, members, provided) is None:
                outside.add(name)
            else:
                bundled.add(name)
        external |= outside
        for library, versions in elf.version_needs.items():
            if library in outside or library not in elf.needed:
                external_versions.extend(_meant(library, versions))
    musl, glibc = _has_musl(elves), _has_glibc(elves, external_versions)
    libc: Literal["glibc", "musl"] | None = "glibc" if glibc else "musl" if musl else None
    # A pure wheel's binaries are loaded by path, if at all, and may be there for several
    # machines and libcs side by side (`proxy.core.select.foreign_only` judges those).
    linux = is_linux_platform(filename)
    loaded = _loaded_by_import(elves, members, provided) if linux else []
    glibc_need, glibc_unknown = _glibc_need(external_versions, policies)
    unloadable = _not_elf_loaded(loaded, not_elf, members, provided) if linux else []
    requires = Requires(
        libc=libc,
        glibc=glibc_need,
        glibcxx=_newest(external_versions, "GLIBCXX"),
        cxxabi=_newest(external_versions, "CXXABI"),
        gcc=_newest(external_versions, "GCC"),
        cuda_major=_cuda_major(elves),
        gpu_sms=_union(elf.gpu_sms for elf in elves),
        gpu_ptx=_union(elf.gpu_ptx for elf in elves),
        x86_64_level=max(
            (e.x86_isa_needed for e in elves if e.machine == "x86_64" and e.x86_isa_needed),
            default=None,
        ),
        execstack=True if any(e.execstack for e in elves) else None,
        nvidia_driver=True if _loads_libcuda(elves, members, provided) else None,
        machines=tuple(sorted({elf.machine for elf in loaded})) or None,
        mixed_libc=True if _has_musl(loaded) and _has_glibc(loaded, _versions(loaded)) else None,
        glibc_unknown=glibc_unknown or None,
        not_elf=tuple(unloadable) or None,
        module_abis=_module_abis(elves) if linux else None,
        elf_systems=_systems_of(loaded, systems or {}),
        executables=tuple(sorted(e.path for e in loaded if e.path in executables)) or None,
        initial_exec_tls=tuple(sorted(e.path for e in loaded if e.initial_exec_tls)) or None,
        pie_executables=tuple(sorted(e.path for e in loaded if e.pie)) or None,
        no_dlopen=tuple(sorted(e.path for e in loaded if e.no_dlopen)) or None,
    )
    arches = {elf.machine for elf in elves}
    tag = _derived_tag(arches, libc, musl and glibc, external_versions, policies)
    return Summary(
        requires=requires,
        bundled_libraries=tuple(sorted(bundled)),
        external_libraries=tuple(sorted(external)),
        derived_platform_tag=tag,
        overclaims=bool(elves) and _overclaims(filename, tag, libc, arches, policies),
    )


def resolve(
    elf: ElfFile, name: str, members: Collection[str], provided: Mapping[str, str]
) -> str | None:
    """The wheel member the loader would load for ``DT_NEEDED`` ``name`` of ``elf``;
    ``members``: the wheel's loadable ELF files; ``provided``: `_provided_by_name`."""
    if "/" in name:
        return None  # a path: relative to the process's working directory, not the wheel
    if _GLIBC_LIBS.match(name):
        return None  # loaded with the interpreter, before any search: the host's
    return _on_run_path(elf, name, members) or provided.get(name)


def _on_run_path(elf: ElfFile, name: str, members: Collection[str]) -> str | None:
    origin = posixpath.dirname(elf.path)
    # DT_RPATH is ignored by the loader when DT_RUNPATH is present.
    for entry in elf.runpath or elf.rpath:
        if "$ORIGIN" not in entry and "${ORIGIN}" not in entry:
            continue  # a directory of the host, or relative to the working directory
        directory = entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        candidate = posixpath.normpath(posixpath.join(directory, name))
        if candidate in members:
            return candidate
    return None


def _provided_by_name(elves: Sequence[ElfFile], members: Collection[str]) -> dict[str, str]:
    """The wheel's library for each SONAME, which the loader reuses once it is loaded.
    libstdc++ and libgcc_s only where a binary an import loads loads the wheel's own
    through its run path (then every binary that needs them gets that one: a library
    with no run path of its own, loaded after it, too); else the process's, the host's.
    A program's run path is not the import's."""
    provided: dict[str, str] = {}
    for elf in sorted(elves, key=lambda e: e.path):
        name = elf.soname or posixpath.basename(elf.path)
        if not _HOST_FIRST.match(name):
            provided.setdefault(name, elf.path)
    roots = _import_roots(elves)
    for _ in range(2):  # the wheel's libstdc++ may bring in more binaries that reach it
        loaded = _closure(roots, elves, members, provided)
        for elf in sorted(loaded, key=lambda e: e.path):
            for name in elf.needed:
                if _HOST_FIRST.match(name) and name not in provided:
                    found = _on_run_path(elf, name, members)
                    if found is not None:
                        provided[name] = found
    return provided


def _has_musl(elves: Sequence[ElfFile]) -> bool:
    return any(_MUSL_LIBC.match(name) for elf in elves for name in elf.needed) or any(
        "ld-musl" in (elf.interpreter or "") for elf in elves
    )


def _has_glibc(elves: Sequence[ElfFile], versions: Iterable[str]) -> bool:
    return (
        any(_GLIBC_LIBS.match(name) for elf in elves for name in elf.needed)
        or any(v.startswith("GLIBC_") for v in versions)
        or any("ld-linux" in (elf.interpreter or "") for elf in elves)
    )


def _glibc_need(
    version_names: Sequence[str], policies: PolicyTable
) -> tuple[str | None, tuple[str, ...]]:
    """The newest glibc the names need, and the named versions no table knows.

    Numeric names say their release; named ones count as the release that first
    defines them (``GLIBC_ABI_DT_RELR``, linked by ``-z pack-relative-relocs``, exists
    from 2.36 on; its numeric needs alone may say 2.2.5). A name no table knows
    (``GLIBC_ABI_GNU2_TLS`` before it was listed) is defined by no release the tables
    know, so it needs one past them all: dropped, it let every older host load a
    binary whose load fails there. ``GLIBC_PRIVATE`` is glibc's own libraries' and
    says no release.
    """
    numeric = _newest(version_names, "GLIBC")
    releases: list[tuple[int, ...]] = []
    unknown: set[str] = set()
    for name in version_names:
        if not name.startswith("GLIBC_") or name == "GLIBC_PRIVATE":
            continue
        if is_numeric(name.removeprefix("GLIBC_")):
            continue
        found = policies.glibc_naming(name)
        if found is None:
            unknown.add(name)
        else:
            releases.append(found)
    if unknown:
        releases.append(policies.glibc_after_known())
    if numeric is not None:
        releases.append(parse_dotted(numeric))
    if not releases:
        return None, ()
    newest = max(releases)
    need = numeric if numeric is not None and parse_dotted(numeric) >= newest else dotted(newest)
    return need, tuple(sorted(unknown))


def _not_elf_loaded(
    loaded: Sequence[ElfFile],
    not_elf: Collection[str],
    members: Collection[str],
    provided: Mapping[str, str],
) -> list[str]:
    """The members of ``not_elf`` a Linux import would load: the extension modules whose
    name carries an interpreter's tag (``_ext.cpython-311-x86_64-linux-gnu.so``,
    ``_ext.abi3.so``) where the wheel installs importable code (not its ``.dist-info``,
    nor its ``.data`` beyond purelib and platlib), and what a loaded binary needs that its
    run path finds among them. dlopen fails on each ("invalid ELF header"), whatever the
    rest of the wheel is. An untagged ``x.so`` is not counted: a wheel's test data or a
    leftover beside the tagged module is named so as well, and nothing says it is
    imported."""
    others = frozenset(not_elf)
    found = {path for path in others if _tagged_module(path)}
    for elf in loaded:
        for name in elf.needed:
            if resolve(elf, name, members, provided) is None:
                path = _on_run_path(elf, name, others)
                if path is not None:
                    found.add(path)
    return sorted(found)


def _tagged_module(path: str) -> bool:
    name = posixpath.basename(path)
    if not _TAGGED_MODULE.match(name) or _LIBRARY.match(name):
        return False
    return _installed_importable(path)


def _installed_importable(path: str) -> bool:
    """Whether the member is installed where imports look: not metadata, and of the
    ``.data`` directory only what goes beside the code."""
    top, _, rest = path.partition("/")
    if top.endswith(".dist-info"):
        return False
    return not top.endswith(".data") or rest.startswith(("purelib/", "platlib/"))


def _module_abis(elves: Iterable[ElfFile]) -> tuple[str, ...] | None:
    """The interpreters the wheel's extension modules are built for ("abi3",
    "cpython-311", "pypy310-pp73"), when every ELF file an import may take for a module
    has a tag read here; None where there is none, or one any interpreter imports (an
    untagged ``x.so``, and ``libfoo.so`` beside the code may be a module: triton's
    ``_C/libtriton.so`` is), or one with a tag not read here (``abi3t``, a ``cpython-311``
    with no machine, which no Linux CPython since 3.5 imports, HPy's, GraalPy's): then
    nothing is judged of them (`proxy.core.decide`). Programs, libraries with a version
    (``libfoo.so.1``) and auditwheel's grafted ones (``pkg.libs/libfoo-1a2b3c4d.so``) are
    no modules."""
    abis: set[str] = set()
    for elf in elves:
        name = posixpath.basename(elf.path)
        if not name.endswith(".so") or not _installed_importable(elf.path):
            continue
        if name.startswith("lib") and elf.path.partition("/")[0].endswith(".libs"):
            continue
        _, dot, tag = name.removesuffix(".so").partition(".")
        found = _KNOWN_MODULE_TAG.fullmatch(tag) if dot else None
        if found is None:
            return None
        abis.add(found.group(1) or found.group(2))
    return tuple(sorted(abis)) or None


def _systems_of(loaded: Iterable[ElfFile], systems: Mapping[str, str]) -> tuple[str, ...] | None:
    """The other systems the binaries an import loads are built for (as `systems` names
    them: "freebsd", "hp-ux", "EI_OSABI 42"), which glibc's loader refuses ("ELF file OS
    ABI invalid")."""
    return tuple(sorted({systems[elf.path] for elf in loaded if elf.path in systems})) or None


def _versions(elves: Iterable[ElfFile]) -> list[str]:
    return [
        name
        for elf in elves
        for library, names in elf.version_needs.items()
        for name in _meant(library, names)
    ]


def _meant(library: str, names: Iterable[str]) -> Iterable[str]:
    """The version names needed of ``library`` that say what they seem to: libgcc_s
    defines nodes named ``GLIBC_2.0`` on some machines (aarch64 among them, for the
    unwinder's old entry points), on musl as on glibc, so a need of one is libgcc_s's to
    meet and says nothing of the C library (pydantic-core's musllinux aarch64 wheels need
    one of their bundled libgcc_s)."""
    if _LIBGCC_S.match(library):
        return [name for name in names if not name.startswith("GLIBC_")]
    return names


def _newest(version_names: Iterable[str], prefix: str) -> str | None:
    versions = []
    for name in version_names:
        split = split_version_name(name)
        if split and split[0] == prefix and is_numeric(split[1]):
            versions.append(split[1])
    return max(versions, key=parse_dotted) if versions else None


def _cuda_major(elves: Sequence[ElfFile]) -> int | None:
    names = [n for elf in elves for n in elf.needed] + [e.soname for e in elves if e.soname]
    majors = [int(m.group(1)) for m in map(_CUDA_RUNTIME.match, names) if m]
    return max(majors, default=None)


def _loads_libcuda(
    elves: Sequence[ElfFile], members: Collection[str], provided: Mapping[str, str]
) -> bool:
    """Whether a binary the wheel loads needs libcuda.so.1 from the host.

    Loaded: the wheel's extension modules and programs, and what they need of the wheel,
    through the loader's own resolution. A library by name (``lib*.so``) that none of them
    needs is loaded by dlopen or ctypes if at all (torch's ``libcaffe2_nvrtc.so``, which
    links libcuda, is opened only when a GPU is there): its needs are not the import's.
    A wheel of libraries only is loaded by other wheels' binaries: all of it counts.
    """
    roots = [e for e in elves if not _LIBRARY.match(posixpath.basename(e.path))] or elves
    return any(
        _LIBCUDA.match(name)
        for elf in _closure(roots, elves, members, provided)
        for name in elf.needed
        if resolve(elf, name, members, provided) is None
    )


def _loaded_by_import(
    elves: Sequence[ElfFile], members: Collection[str], provided: Mapping[str, str]
) -> list[ElfFile]:
    """The binaries an import loads (`_import_roots`) and what they load of the wheel."""
    return _closure(_import_roots(elves), elves, members, provided)


def _import_roots(elves: Sequence[ElfFile]) -> list[ElfFile]:
    """The binaries an import loads first: the extension modules (``*.so`` files but
    libraries by name); in a wheel of libraries only, every ``*.so`` (other wheels'
    binaries load them). Programs, objects and device code (a CUDA ``.cubin`` is an ELF
    file too) are not loaded by an import."""
    shared = [e for e in elves if _SHARED_OBJECT.search(posixpath.basename(e.path))]
    modules = [e for e in shared if not _LIBRARY.match(posixpath.basename(e.path))]
    return modules or shared


def _closure(
    roots: Sequence[ElfFile],
    elves: Sequence[ElfFile],
    members: Collection[str],
    provided: Mapping[str, str],
) -> list[ElfFile]:
    """``roots`` and every ELF file of the wheel the loader loads for them."""
    by_path = {elf.path: elf for elf in elves}
    loaded, todo = {e.path: e for e in roots}, list(roots)
    while todo:
        elf = todo.pop()
        for name in elf.needed:
            found = resolve(elf, name, members, provided)
            if found is not None and found in by_path and found not in loaded:
                loaded[found] = by_path[found]
                todo.append(by_path[found])
    return list(loaded.values())


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...] | None:
    found = {arch for group in groups for arch in group}
    return tuple(sorted(found, key=target_order)) if found else None


def _derived_tag(
    arches: set[str],
    libc: str | None,
    mixed_libc: bool,
    versions: Sequence[str],
    policies: PolicyTable,
) -> str | None:
    if len(arches) != 1 or mixed_libc:
        return None  # such a wheel loads nowhere whole
    (arch,) = arches
    if libc == "musl":
        musl = policies.musl_tag(arch)
        return f"{musl.tag}_{arch}" if musl else None
    policy = policies.glibc_tag(arch, versions)
    return f"{policy.tag}_{arch}" if policy else None


def _overclaims(
    filename: str,
    derived: str | None,
    libc: str | None,
    arches: set[str],
    policies: PolicyTable,
) -> bool:
    try:
        _, _, _, tags = parse_wheel_filename(split_label(filename)[0])
    except InvalidWheelFilename:
        return False
    derived_glibc = policies.claim(derived) if derived else None
    for platform in {tag.platform for tag in tags}:
        if platform == "any":
            return True  # binaries in a wheel that claims every platform
        if platform.startswith("linux_"):
            if {platform.removeprefix("linux_")} != arches:
                return True
            continue
        claim = policies.claim(platform)
        if claim is None:
            continue  # not a Linux tag: its binaries are not ELF files
        family, version, arch = claim
        if {arch} != arches:
            return True
        if family == "musllinux":
            if libc == "glibc":
                return True
            continue
        if libc == "musl" or derived_glibc is None or derived_glibc[0] != "manylinux":
            return True
        if derived_glibc[1] > version:
            return True
    return False
