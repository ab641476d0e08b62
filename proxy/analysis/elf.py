"""What one ELF binary needs from the host that loads it. The only module importing elftools.

Reads what the dynamic loader reads: the ELF header, program headers, the dynamic
segment and the strings and version needs it points at, the GNU property note; and,
to find CUDA fat binaries, section headers and the entry headers of ``.nv_fatbin``.
A file with thread-local storage of its own that does not link glibc also has its
dynamic relocations read (past the relative ones), and the dynamic symbols its TLS
relocations name. Never the payload of a compressed section. Every size and offset is
checked against the file and against fixed ceilings before it is read.

A debug-info-only file (the ``.debug`` half of a split binary, made by ``objcopy
--only-keep-debug`` or ``eu-strip -f``) keeps the ELF header, program headers and
section headers of the binary it came from, but none of the bytes they point at:
its code and dynamic sections are ``SHT_NOBITS``. No loader maps it, so it is
skipped like a relocatable object; see `_Reader.debug_only`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile

from proxy.analysis.bounds import MiB, Unanalysable
from proxy.core.report import ElfFile

ELF_MAGIC = b"\x7fELF"

MAX_PROGRAM_HEADERS = 4096
MAX_SECTIONS = 65536
MAX_DYNAMIC_BYTES = 1 * MiB
MAX_STRING = 4096
MAX_VERSION_ENTRIES = 65536
MAX_NOTE_BYTES = 1 * MiB
MAX_SECTION_NAMES = 4 * MiB
MAX_FATBIN_HEADERS = 1_000_000
# A dynamic relocation table read for its TLS entries (past its relative ones, which the
# linker puts first and counts in DT_RELACOUNT): a big C++ library's is some MiB.
MAX_RELOCATION_BYTES = 64 * MiB
# TLS relocations looked at, and distinct symbols looked up, in one file: a library has
# a handful; a crafted table of millions is not worth its cost, and counts as none.
MAX_TLS_RELOCATIONS = 4096
MAX_TLS_SYMBOLS = 256
GLIBC_LIBC = "libc.so.6"
SHN_UNDEF = 0
# The dynamic relocation types of initial-exec TLS (the thread pointer offset of a
# variable), by machine: the entries musl's loader refuses to resolve to a library that
# dlopen loaded ("initial-exec TLS resolves to dynamic definition").
_TPOFF_TYPES = {
    "x86_64": frozenset({18}),  # R_X86_64_TPOFF64
    "i686": frozenset({14, 37}),  # R_386_TLS_TPOFF, R_386_TLS_TPOFF32
    "aarch64": frozenset({1030}),  # R_AARCH64_TLS_TPREL64
    "armv7l": frozenset({19}),  # R_ARM_TLS_TPOFF32
    "ppc64le": frozenset({73}),  # R_PPC64_TPREL64
    "ppc64": frozenset({73}),
    "s390x": frozenset({56}),  # R_390_TLS_TPOFF
    "riscv64": frozenset({11}),  # R_RISCV_TLS_TPREL64
    "loongarch64": frozenset({11}),  # R_LARCH_TLS_TPREL64
}
PF_X = 1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
PN_XNUM = 0xFFFF
SHN_XINDEX = 0xFFFF
NT_GNU_PROPERTY_TYPE_0 = 5
GNU_PROPERTY_X86_ISA_1_NEEDED = 0xC0008002
FATBIN_MAGIC = 0xBA55ED50
FATBIN_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of what follows
# kind, version, header size, padded payload, arch, flags
FATBIN_ENTRY = struct.Struct("<HHIQ12xI8xQ")
FATBIN_PTX = 1
FATBIN_SASS = (2, 0x10)
# How the entry's flags mark sm_90a / compute_90a (architecture-specific) and sm_100f /
# compute_100f (family-specific): so nvcc 13.0 writes them, and so they are in
# libcublasLt 12.9 (its sm_90a and sm_120f entries). The cubin's own e_flags do not
# tell: ptxas 13.0 writes the same e_flags for sm_90 and sm_90a, and for sm_100, sm_100a
# and sm_100f; and a compressed cubin's are not read.
FATBIN_ARCH_SPECIFIC = 0x100000
FATBIN_FAMILY_SPECIFIC = 0x200000

# The machine as wheel platform tags spell it.
_MACHINES = {
    "EM_X86_64": "x86_64",
    "EM_386": "i686",
    "EM_AARCH64": "aarch64",
    "EM_ARM": "armv7l",
    "EM_LOONGARCH": "loongarch64",
}
# The names GCC and Debian give these machines' 32-bit ABIs (-mx32, -mabi=ilp32).
_ILP32 = {"EM_X86_64": "x32", "EM_AARCH64": "aarch64_ilp32"}
# glibc's DEFAULT_STACK_PERMS: where PT_GNU_STACK is missing these get no executable stack.
_NON_EXEC_STACK_DEFAULT = frozenset(
    {"aarch64", "aarch64_ilp32", "riscv64", "riscv32", "loongarch64"}
)


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


ET_DYN, ET_EXEC = 3, 2
# DT_FLAGS_1 bits glibc's loader refuses a dlopen() on: ld -z nodlopen, and a
# position-independent executable (glibc 2.30, and 2.28 and 2.29 on their release branches).
DF_1_NOOPEN, DF_1_PIE = 0x40, 0x08000000


def elf_type(head: bytes) -> int | None:
    """``e_type`` from an ELF file's first bytes (``ET_DYN``: a shared object or a PIE,
    ``ET_EXEC``: an executable at a fixed address, 1: a relocatable object), in the byte
    order its header names; None when the header is too short or names none."""
    order = {1: "<", 2: ">"}.get(head[5]) if len(head) >= 18 else None
    return struct.unpack_from(f"{order}H", head, 16)[0] if order else None


def read_elf(
    stream: IO[bytes],
    path: str,
    doubts: list[str] | None = None,
    fat_binaries: list[FatBinary] | None = None,
    from_start: FromStart | None = None,
) -> ElfFile | None:
    """The facts of one ELF file; None for objects no loader maps (relocatable, core,
    debug-info-only).

    Raises Unanalysable for anything malformed, with the path in the message. Into
    ``doubts`` go layout disagreements a well-formed file does not have (section 0 not
    null, the dynamic segment where no dynamic section is, a fat binary section that
    does not begin with one): a caller that read the file by far entries takes them as
    a sign that an entry was misplaced, and reads again from the start.

    With ``fat_binaries``, the ``.nv_fatbin`` sections go there instead of being read:
    the file's GPU code is left empty, for `read_fat_binaries` to read later.

    ``from_start(offset, length)`` says whether bytes read were the file's own for
    certain (`proxy.analysis.member.MemberReader.from_start`): a malformed note read
    from such bytes is how the file is, not a doubt.
    """
    try:
        reader = _Reader(stream, path, from_start)
        elf = reader.read(fat_binaries)
        if doubts is not None:
            doubts.extend(reader.doubts)
        return elf
    except Unanalysable:
        raise
    except (ELFError, struct.error, ValueError) as exc:
        raise Unanalysable(f"{path}: malformed ELF ({exc})") from None


FromStart = Callable[[int, int], bool]


@dataclass(frozen=True, slots=True)
class FatBinary:
    """Where one ``.nv_fatbin`` section lies in its file."""

    offset: int
    size: int


def read_fat_binaries(
    stream: IO[bytes], path: str, sections: Sequence[FatBinary], doubts: list[str] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The SASS and PTX architectures of the fat binaries in ``sections`` of one file, as
    `read_elf` found them. Raises Unanalysable; ``doubts`` as for `read_elf`."""
    walk = _FatBinaryWalk(stream, path)
    sass: set[tuple[int, str]] = set()
    ptx: set[tuple[int, str]] = set()
    for section in sections:
        for kind, arch, flags in walk.entries(section):
            target = (arch, _suffix(flags))
            if kind in FATBIN_SASS:
                sass.add(target)
            elif kind == FATBIN_PTX:
                ptx.add(target)
    if doubts is not None:
        doubts.extend(walk.doubts)
    return _archs(sass), _archs(ptx)


@dataclass(frozen=True, slots=True)
class _Dynamic:
    strtab: int | None
    strsz: int | None
    needed: tuple[int, ...]
    soname: int | None
    rpath: tuple[int, ...]
    runpath: tuple[int, ...]
    verneed: int | None
    verneednum: int
    # DT_STRTAB, DT_SYMTAB and a hash table: what the loader links a shared object with.
    linkable: bool = False
    symtab: int | None = None
    syment: int | None = None
    # (address, size, entry size, with addends, relative entries first) of DT_RELA, DT_REL
    relocations: tuple[tuple[int, int, int, bool, int], ...] = ()
    flags_1: int = 0  # DT_FLAGS_1


class _Bytes:
    """A file's bytes, read only within its size."""

    def __init__(self, stream: IO[bytes], path: str) -> None:
        self.stream = stream
        self.path = path
        self.size = stream.seek(0, io.SEEK_END)
        self.doubts: list[str] = []

    def read_exact(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise Unanalysable(f"{self.path}: {what} lies outside the file")
        self.stream.seek(offset)
        data = self.stream.read(length)
        if len(data) != length:
            raise Unanalysable(f"{self.path}: {what} is truncated")
        return data


class _Reader(_Bytes):
    def __init__(self, stream: IO[bytes], path: str, from_start: FromStart | None) -> None:
        super().__init__(stream, path)
        self.from_start = from_start
        self.elf = ELFFile(stream)
        self.structs = self.elf.structs
        self._sections: list[Any] | None = None

    def read(self, fat_binaries: list[FatBinary] | None) -> ElfFile | None:
        if self.elf["e_type"] not in ("ET_DYN", "ET_EXEC"):
            return None
        machine = self._machine()
        phdrs = self._program_headers()
        try:
            return self._loadable(machine, phdrs, fat_binaries)
        except (Unanalysable, ELFError, struct.error, ValueError):
            # A debug file's program headers point at bytes it does not have (past its
            # end, or at its debug sections): what they lead to is not worth an answer.
            if self.debug_only(phdrs):
                return None
            raise

    def _loadable(
        self, machine: str, phdrs: list[Any], fat_binaries: list[FatBinary] | None
    ) -> ElfFile | None:
        loads = [p for p in phdrs if p["p_type"] == "PT_LOAD"]
        dynamic = self._dynamic(phdrs)
        strings = _Strings(self, loads, dynamic)
        stack = [p for p in phdrs if p["p_type"] == "PT_GNU_STACK"]
        execstack = (
            bool(stack[0]["p_flags"] & PF_X) if stack else machine not in _NON_EXEC_STACK_DEFAULT
        )
        # Section headers say what a debug file lacks, but the loader never reads them: a
        # dynamic array it could link with is the file's own, whatever they claim (a debug
        # file's program headers, kept verbatim, point at its debug bytes instead).
        if not dynamic.linkable and self.debug_only(phdrs):
            return None
        sections = self._fat_binaries(phdrs)
        needed = tuple(strings.get(o) for o in dynamic.needed)
        if fat_binaries is None:
            sms, ptx = read_fat_binaries(self.stream, self.path, sections, self.doubts)
        else:
            fat_binaries.extend(sections)
            sms, ptx = (), ()
        return ElfFile(
            path=self.path,
            machine=machine,
            elf_class=self.elf.elfclass,
            soname=strings.get(dynamic.soname) if dynamic.soname is not None else None,
            needed=needed,
            rpath=_paths(strings.get(o) for o in dynamic.rpath),
            runpath=_paths(strings.get(o) for o in dynamic.runpath),
            version_needs=self._version_needs(loads, dynamic, strings),
            execstack=execstack,
            x86_isa_needed=self._x86_isa_needed(phdrs),
            gpu_sms=sms,
            gpu_ptx=ptx,
            interpreter=self._interpreter(phdrs),
            initial_exec_tls=self._initial_exec_tls(machine, phdrs, loads, dynamic, needed),
            pie=bool(dynamic.flags_1 & DF_1_PIE),
            no_dlopen=bool(dynamic.flags_1 & DF_1_NOOPEN),
        )

    def debug_only(self, phdrs: list[Any]) -> bool:
        """Whether the file is debug information only, by what its section headers say.

        True where the section table is sound (section 0 null), the file's code (its
        allocated, executable sections) is there and all of it ``SHT_NOBITS``, no section
        is ``SHT_DYNAMIC``, and the sections holding ``PT_DYNAMIC``'s address are all
        ``SHT_NOBITS``: the dynamic array, its strings and the code are not in the file.
        False where the section headers cannot be read, so a file whose dynamic segment
        merely lies outside it stays unanalysable. Never raises.
        """
        try:
            sections = self.sections()
        except (Unanalysable, ELFError, struct.error, ValueError):
            return False
        if not sections or sections[0]["sh_type"] != "SHT_NULL":
            return False
        allocated = [s for s in sections if s["sh_flags"] & SHF_ALLOC and s["sh_size"] > 0]
        code = [s for s in allocated if s["sh_flags"] & SHF_EXECINSTR]
        if not code or any(s["sh_type"] != "SHT_NOBITS" for s in code):
            return False
        if any(s["sh_type"] == "SHT_DYNAMIC" for s in sections):
            return False
        for phdr in phdrs:
            if phdr["p_type"] == "PT_DYNAMIC":
                address = phdr["p_vaddr"]
                holding = [
                    s for s in allocated if s["sh_addr"] <= address < s["sh_addr"] + s["sh_size"]
                ]
                return bool(holding) and all(s["sh_type"] == "SHT_NOBITS" for s in holding)
        return True

    # -- raw access -----------------------------------------------------------

    def parse_table(self, struct_: Any, data: bytes, count: int, entsize: int) -> list[Any]:
        view = io.BytesIO(data)
        return [struct_parse(struct_, view, i * entsize) for i in range(count)]

    # -- header and segments --------------------------------------------------

    def _machine(self) -> str:
        name = self.elf["e_machine"]
        if not isinstance(name, str):
            return f"em_{name}"
        bits64 = self.elf.elfclass == 64
        if name == "EM_PPC64":
            return "ppc64le" if self.elf.little_endian else "ppc64"
        if name == "EM_S390":
            return "s390x" if bits64 else "s390"
        if name == "EM_RISCV":
            return "riscv64" if bits64 else "riscv32"
        if name in _ILP32 and not bits64:
            # A 64-bit machine's 32-bit ABI (x32, ILP32): a 64-bit process's loader says
            # "wrong ELF class: ELFCLASS32", so it is another machine for the wheel.
            return _ILP32[name]
        return _MACHINES.get(name, name.removeprefix("EM_").lower())

    def _program_headers(self) -> list[Any]:
        count = self.elf["e_phnum"]
        if count == 0:
            return []
        if count == PN_XNUM or count > MAX_PROGRAM_HEADERS:
            raise Unanalysable(f"{self.path}: absurd program header count {count}")
        entsize = self.elf["e_phentsize"]
        if entsize != self.structs.Elf_Phdr.sizeof():
            raise Unanalysable(f"{self.path}: program header size {entsize} is wrong")
        data = self.read_exact(self.elf["e_phoff"], count * entsize, "program header table")
        return self.parse_table(self.structs.Elf_Phdr, data, count, entsize)

    def segment_bytes(self, phdr: Any, limit: int, what: str) -> bytes:
        if phdr["p_filesz"] > limit:
            raise Unanalysable(f"{self.path}: {what} of {phdr['p_filesz']} bytes")
        return self.read_exact(phdr["p_offset"], phdr["p_filesz"], what)

    def _interpreter(self, phdrs: list[Any]) -> str | None:
        for phdr in phdrs:
            if phdr["p_type"] == "PT_INTERP":
                raw = self.segment_bytes(phdr, MAX_STRING, "PT_INTERP")
                return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return None

    def _dynamic(self, phdrs: list[Any]) -> _Dynamic:
        tags: dict[str, list[int]] = {}
        for phdr in phdrs:
            if phdr["p_type"] != "PT_DYNAMIC":
                continue
            data = self.segment_bytes(phdr, MAX_DYNAMIC_BYTES, "dynamic segment")
            entsize = self.structs.Elf_Dyn.sizeof()
            view = io.BytesIO(data)
            for index in range(len(data) // entsize):
                entry = struct_parse(self.structs.Elf_Dyn, view, index * entsize)
                if entry["d_tag"] == "DT_NULL":
                    break
                if isinstance(entry["d_tag"], str):
                    tags.setdefault(entry["d_tag"], []).append(entry["d_val"])
            break  # the loader uses one dynamic segment

        def first(tag: str) -> int | None:
            values = tags.get(tag)
            return values[0] if values else None

        return _Dynamic(
            strtab=first("DT_STRTAB"),
            strsz=first("DT_STRSZ"),
            needed=tuple(tags.get("DT_NEEDED", ())),
            soname=first("DT_SONAME"),
            rpath=tuple(tags.get("DT_RPATH", ())),
            runpath=tuple(tags.get("DT_RUNPATH", ())),
            verneed=first("DT_VERNEED"),
            verneednum=first("DT_VERNEEDNUM") or 0,
            linkable="DT_STRTAB" in tags
            and "DT_SYMTAB" in tags
            and ("DT_HASH" in tags or "DT_GNU_HASH" in tags),
            symtab=first("DT_SYMTAB"),
            syment=first("DT_SYMENT"),
            flags_1=(tags.get("DT_FLAGS_1") or [0])[-1],  # glibc keeps the last one
            relocations=tuple(
                (address, size, entry, addends, relative or 0)
                for address, size, entry, addends, relative in (
                    (
                        first("DT_RELA"),
                        first("DT_RELASZ"),
                        first("DT_RELAENT"),
                        True,
                        first("DT_RELACOUNT"),
                    ),
                    (
                        first("DT_REL"),
                        first("DT_RELSZ"),
                        first("DT_RELENT"),
                        False,
                        first("DT_RELCOUNT"),
                    ),
                )
                if address is not None and size and entry
            ),
        )

    def file_offset(self, loads: list[Any], address: int, what: str) -> int:
        """Where the loader finds virtual address ``address`` in the file."""
        for phdr in loads:
            start = phdr["p_vaddr"]
            if start <= address < start + phdr["p_filesz"]:
                return int(address - start + phdr["p_offset"])
        raise Unanalysable(f"{self.path}: {what} address {address:#x} is in no loaded segment")

    # -- version needs --------------------------------------------------------

    def _version_needs(
        self, loads: list[Any], dynamic: _Dynamic, strings: _Strings
    ) -> Mapping[str, tuple[str, ...]]:
        if dynamic.verneed is None or dynamic.verneednum == 0:
            return {}
        if dynamic.verneednum > MAX_VERSION_ENTRIES:
            raise Unanalysable(f"{self.path}: absurd DT_VERNEEDNUM {dynamic.verneednum}")
        needs: dict[str, list[str]] = {}
        entries = 0
        offset = self.file_offset(loads, dynamic.verneed, "DT_VERNEED")
        verneed = self.structs.Elf_Verneed
        vernaux = self.structs.Elf_Vernaux
        for _ in range(dynamic.verneednum):
            need = struct_parse(verneed, self._view(offset, verneed.sizeof(), "version need"))
            if need["vn_version"] != 1:
                raise Unanalysable(f"{self.path}: version need of version {need['vn_version']}")
            names = needs.setdefault(strings.get(need["vn_file"]), [])
            aux = offset + need["vn_aux"]
            for _ in range(need["vn_cnt"]):
                entries += 1
                if entries > MAX_VERSION_ENTRIES:
                    raise Unanalysable(f"{self.path}: more than {MAX_VERSION_ENTRIES} versions")
                item = struct_parse(vernaux, self._view(aux, vernaux.sizeof(), "version entry"))
                names.append(strings.get(item["vna_name"]))
                if item["vna_next"] == 0:
                    break
                aux += item["vna_next"]
            if need["vn_next"] == 0:
                break
            offset += need["vn_next"]
        return {lib: tuple(versions) for lib, versions in needs.items()}

    def _view(self, offset: int, length: int, what: str) -> io.BytesIO:
        return io.BytesIO(self.read_exact(offset, length, what))

    # -- thread-local storage -------------------------------------------------

    def _initial_exec_tls(
        self,
        machine: str,
        phdrs: list[Any],
        loads: list[Any],
        dynamic: _Dynamic,
        needed: tuple[str, ...],
    ) -> bool:
        """Whether the file reaches thread-local variables of its own by the initial-exec
        model: a dynamic TPOFF relocation against no symbol (its own TLS block) or against
        a symbol it defines. Read only where it has a TLS block of its own (PT_TLS) and
        does not link glibc, whose loader takes such files (the relocation tables of a big
        C++ library are some MiB, read by ranges when analysed by URL); not every linker
        sets DF_STATIC_TLS for them. What cannot be read (a table beyond the file or its
        ceilings, a symbol out of the loaded segments) counts as none: the question is
        musl's alone, and an error here would hide the file from every host."""
        types = _TPOFF_TYPES.get(machine)
        if types is None or GLIBC_LIBC in needed or not any(p["p_type"] == "PT_TLS" for p in phdrs):
            return False
        symbols = [
            s for table in dynamic.relocations for s in self._tpoff_symbols(types, loads, table)
        ]
        distinct = list(dict.fromkeys(symbols))
        if 0 in distinct:
            return True  # the file's own TLS block, by its offset
        return any(self._defines(loads, dynamic, s) for s in distinct[:MAX_TLS_SYMBOLS])

    def _tpoff_symbols(
        self, types: frozenset[int], loads: list[Any], table: tuple[int, int, int, bool, int]
    ) -> list[int]:
        """The symbol indexes of one table's TPOFF relocations (at most
        `MAX_TLS_RELOCATIONS`), found without a Python object per entry: the type field
        of every entry is sliced out in one step and searched for each type."""
        address, size, entry, addends, relative = table
        bits64 = self.elf.elfclass == 64
        word = 8 if bits64 else 4
        if entry != word * (3 if addends else 2):
            return []
        skipped = min(relative, size // entry) * entry
        address, size = address + skipped, (size - skipped) // entry * entry
        if size == 0 or size > MAX_RELOCATION_BYTES:
            return []
        try:
            offset = self.file_offset(loads, address, "relocations")
            data = memoryview(self.read_exact(offset, size, "relocations"))
        except Unanalysable:
            return []
        little = self.elf.little_endian
        order = "<" if little else ">"
        # Where in an entry its type is: 64-bit r_info's low word, 32-bit r_info's low byte.
        if bits64:
            at, width = (word if little else word + 4), 4
        else:
            at, width = (word if little else word + 3), 1
        column = (
            data.cast("B")[at::entry].tobytes()
            if width == 1
            else data.cast("I")[at // 4 :: entry // 4].tobytes()
        )
        found: list[int] = []
        hits = 0  # a match across two fields counts too: a crafted column may be all such
        for kind in types:
            if kind >= 1 << (8 * width):
                continue
            pattern = kind.to_bytes(width, "little" if little else "big")
            start = column.find(pattern)
            while start != -1 and hits < MAX_TLS_RELOCATIONS:
                hits += 1
                if start % width == 0:
                    index = start // width
                    info_at = index * entry + word
                    if bits64:
                        (info,) = struct.unpack_from(f"{order}Q", data, info_at)
                        found.append(info >> 32)
                    else:
                        (info,) = struct.unpack_from(f"{order}I", data, info_at)
                        found.append(info >> 8)
                start = column.find(pattern, start + 1)
        return found

    def _defines(self, loads: list[Any], dynamic: _Dynamic, symbol: int) -> bool:
        """Whether dynamic symbol ``symbol`` is defined in the file (its section index is
        not SHN_UNDEF); False where the symbol table cannot be found or read."""
        bits64 = self.elf.elfclass == 64
        size = 24 if bits64 else 16
        if dynamic.symtab is None or (dynamic.syment or size) != size:
            return False
        try:
            offset = self.file_offset(loads, dynamic.symtab + symbol * size, "symbol")
            raw = self.read_exact(offset, size, "symbol")
        except Unanalysable:
            return False
        order = "<" if self.elf.little_endian else ">"
        (section,) = struct.unpack_from(f"{order}H", raw, 6 if bits64 else 14)
        return bool(section != SHN_UNDEF)

    # -- notes ----------------------------------------------------------------

    def _x86_isa_needed(self, phdrs: list[Any]) -> int | None:
        # The loader reads PT_GNU_PROPERTY; older linkers only had the note in PT_NOTE.
        segments = [p for p in phdrs if p["p_type"] == "PT_GNU_PROPERTY"] or [
            p for p in phdrs if p["p_type"] == "PT_NOTE"
        ]
        needed = 0
        seen = False
        budget = MAX_NOTE_BYTES
        for phdr in segments:
            # What is left is checked before this segment is counted against it: counted
            # first, one segment over half the budget was refused as if read twice.
            data = self.segment_bytes(phdr, budget, "note segment")
            budget -= phdr["p_filesz"]
            align = 8 if phdr["p_align"] == 8 else 4
            for pr_type, value in self._gnu_properties(data, align, phdr):
                if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED and len(value) == 4:
                    seen = True
                    needed |= int.from_bytes(value, "little" if self.elf.little_endian else "big")
        return needed.bit_length() if seen and needed else None

    def _gnu_properties(self, data: bytes, align: int, phdr: Any) -> Iterator[tuple[int, bytes]]:
        header = self.structs.Elf_Nhdr
        word = self.structs.Elf_word("value")
        view = io.BytesIO(data)
        offset = 0
        while offset + header.sizeof() <= len(data):
            note = struct_parse(header, view, offset)
            name_at = offset + header.sizeof()
            desc_at = name_at + _round_up(note["n_namesz"], 4)
            desc_end = desc_at + note["n_descsz"]
            if desc_end > len(data):
                # The loader stops at such a note and loads the file: a linker or patching
                # tool can leave PT_NOTE pointing at bytes that are no notes any more
                # (libcusparse's points into its grown program header table).
                self._malformed_note("a note runs past its segment", phdr)
                return
            name = data[name_at : name_at + note["n_namesz"]]
            if name == b"GNU\0" and note["n_type"] in ("NT_GNU_PROPERTY_TYPE_0", 5):
                pos = desc_at
                while pos + 8 <= desc_end:
                    pr_type = struct_parse(word, view, pos)
                    pr_size = struct_parse(word, view, pos + 4)
                    if pos + 8 + pr_size > desc_end:
                        self._malformed_note("a GNU property runs past its note", phdr)
                        break  # as the loader does: the rest of this note is not read
                    yield pr_type, data[pos + 8 : pos + 8 + pr_size]
                    pos += 8 + _round_up(pr_size, 8 if self.elf.elfclass == 64 else 4)
            offset = _round_up(desc_end, align)

    def _malformed_note(self, what: str, phdr: Any) -> None:
        """A doubt, unless the note and what led to it were read from the start."""
        header = self.elf["e_ehsize"]
        table = self.elf["e_phnum"] * self.elf["e_phentsize"]
        spans = ((0, header), (self.elf["e_phoff"], table), (phdr["p_offset"], phdr["p_filesz"]))
        if self.from_start is None or not all(self.from_start(*span) for span in spans):
            self.doubts.append(what)

    # -- CUDA fat binaries ----------------------------------------------------

    def sections(self) -> list[Any]:
        """The section headers, read once."""
        if self._sections is None:
            self._sections = self._read_sections()
        return self._sections

    def _read_sections(self) -> list[Any]:
        offset = self.elf["e_shoff"]
        if offset == 0:
            return []
        entsize = self.elf["e_shentsize"]
        shdr = self.structs.Elf_Shdr
        if entsize != shdr.sizeof():
            raise Unanalysable(f"{self.path}: section header size {entsize} is wrong")
        count = self.elf["e_shnum"]
        if count == 0:  # extended numbering: the count is in section 0
            first = struct_parse(shdr, self._view(offset, entsize, "section header 0"))
            count = first["sh_size"]
        if count > MAX_SECTIONS:
            raise Unanalysable(f"{self.path}: absurd section count {count}")
        data = self.read_exact(offset, count * entsize, "section header table")
        return self.parse_table(shdr, data, count, entsize)

    def _fat_binaries(self, phdrs: list[Any]) -> list[FatBinary]:
        """The ``.nv_fatbin`` sections, once the section layout is checked."""
        sections = self.sections()
        if not sections:
            self.doubts.append("no section headers")
            return []
        index = self.elf["e_shstrndx"]
        if index == SHN_XINDEX:
            index = sections[0]["sh_link"]
        if not 0 < index < len(sections):
            self.doubts.append("no section name table")
            return []
        names_header = sections[index]
        if names_header["sh_size"] > MAX_SECTION_NAMES:
            size = names_header["sh_size"]
            raise Unanalysable(f"{self.path}: section name table of {size} bytes")
        names = self.read_exact(
            names_header["sh_offset"], names_header["sh_size"], "section name table"
        )
        self._check_layout(sections, names, names_header, phdrs)
        found = []
        for section in sections:
            start = section["sh_name"]
            if names[start : start + 11] != b".nv_fatbin\0" or section["sh_type"] == "SHT_NOBITS":
                continue
            if section["sh_offset"] + section["sh_size"] > self.size:
                raise Unanalysable(f"{self.path}: .nv_fatbin lies outside the file")
            found.append(FatBinary(section["sh_offset"], section["sh_size"]))
        return found

    def _check_layout(
        self, sections: list[Any], names: bytes, names_header: Any, phdrs: list[Any]
    ) -> None:
        if sections[0]["sh_type"] != "SHT_NULL":
            self.doubts.append("section 0 is not null")
        at = names_header["sh_name"]
        if names[at : at + 10] != b".shstrtab\0":
            self.doubts.append("the section name table is not named .shstrtab")
        dynamic = [p for p in phdrs if p["p_type"] == "PT_DYNAMIC"]
        if dynamic and not any(
            s["sh_type"] == "SHT_DYNAMIC" and s["sh_offset"] == dynamic[0]["p_offset"]
            for s in sections
        ):
            self.doubts.append("no dynamic section where the dynamic segment is")


class _FatBinaryWalk(_Bytes):
    """The entry headers of CUDA fat binaries, container after container."""

    def entries(self, section: FatBinary) -> Iterator[tuple[int, int, int]]:
        """(kind, arch, flags) of every entry of every container in the section."""
        start = section.offset
        if start + section.size > self.size:
            raise Unanalysable(f"{self.path}: .nv_fatbin lies outside the file")
        end = start + section.size
        pos = start
        headers = 0
        while pos + FATBIN_HEADER.size <= end:
            headers += 1
            if headers > MAX_FATBIN_HEADERS:
                raise Unanalysable(f"{self.path}: more than {MAX_FATBIN_HEADERS} fat binaries")
            magic, version, header_size, body = FATBIN_HEADER.unpack(
                self.read_exact(pos, FATBIN_HEADER.size, "fat binary header")
            )
            if magic != FATBIN_MAGIC:
                if pos == start:
                    self.doubts.append(".nv_fatbin does not begin with a fat binary")
                skipped = self._skip_zeros(pos, end)
                if skipped == pos:
                    return  # not a fat binary container: stop rather than guess
                pos = skipped
                continue
            if version != 1 or header_size < FATBIN_HEADER.size:
                return
            container_end = min(pos + header_size + body, end)
            entry = pos + header_size
            while entry + FATBIN_ENTRY.size <= container_end:
                headers += 1
                if headers > MAX_FATBIN_HEADERS:
                    raise Unanalysable(f"{self.path}: more than {MAX_FATBIN_HEADERS} entries")
                kind, _, entry_size, payload, arch, flags = FATBIN_ENTRY.unpack(
                    self.read_exact(entry, FATBIN_ENTRY.size, "fat binary entry")
                )
                if entry_size < FATBIN_ENTRY.size:
                    break
                yield kind, arch, flags
                entry += entry_size + payload
            pos = _round_up(container_end, 8)

    def _skip_zeros(self, pos: int, end: int) -> int:
        """Past zero padding between containers, to an 8-byte boundary."""
        while pos < end:
            chunk = self.read_exact(pos, min(64 * 1024, end - pos), "fat binary padding")
            nonzero = len(chunk) - len(chunk.lstrip(b"\0"))
            if nonzero < len(chunk):
                return pos + nonzero - nonzero % 8
            pos += len(chunk)
        return end


class _Strings:
    """Strings of the dynamic string table, read one at a time."""

    def __init__(self, reader: _Reader, loads: list[Any], dynamic: _Dynamic) -> None:
        self.reader = reader
        self.offset: int | None = None
        self.size = 0
        if dynamic.strtab is not None:
            self.offset = reader.file_offset(loads, dynamic.strtab, "DT_STRTAB")
            limit = reader.size - self.offset
            self.size = limit if dynamic.strsz is None else min(dynamic.strsz, limit)

    def get(self, index: int) -> str:
        if self.offset is None:
            raise Unanalysable(f"{self.reader.path}: dynamic entries name strings but no DT_STRTAB")
        if not 0 <= index < self.size:
            raise Unanalysable(f"{self.reader.path}: string offset {index} outside DT_STRTAB")
        # Most strings are short: look at a little first, so remote reads stay small.
        for length in (256, MAX_STRING):
            length = min(length, self.size - index)
            raw = self.reader.read_exact(self.offset + index, length, "dynamic string")
            end = raw.find(b"\0")
            if end >= 0:
                return raw[:end].decode("utf-8", "replace")
        raise Unanalysable(f"{self.reader.path}: unterminated dynamic string")


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _paths(values: Iterator[str]) -> tuple[str, ...]:
    return tuple(part for value in values for part in value.split(":") if part)


def _suffix(flags: int) -> str:
    """``"a"``, ``"f"`` or ``""``: the letter nvcc's target name has (sm_90a, sm_100f)."""
    # Both bits set is no target nvcc writes; the narrower reading is the safe one.
    if flags & FATBIN_ARCH_SPECIFIC:
        return "a"
    return "f" if flags & FATBIN_FAMILY_SPECIFIC else ""


def _archs(values: set[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(f"{v // 10}.{v % 10}{suffix}" for v, suffix in sorted(values))
