"""From ELF facts to requirements, the bundled/external split and the derived tag."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from proxy.core.aggregate import resolve, summarize
from proxy.core.policy import policy_table
from proxy.core.report import ElfFile, Requires

X86 = "cp311-cp311-manylinux_2_17_x86_64"


def elf(path: str = "pkg/_ext.so", **fields: Any) -> ElfFile:
    fields.setdefault("machine", "x86_64")
    return ElfFile(path=path, **fields)


def summary(
    elves: list[ElfFile],
    tag: str = X86,
    not_elf: tuple[str, ...] = (),
    systems: dict[str, str] | None = None,
    executables: tuple[str, ...] = (),
) -> Any:
    return summarize(f"pkg-1.0-{tag}.whl", elves, policy_table(), not_elf, systems, executables)


def test_a_wheel_without_binaries_needs_nothing() -> None:
    result = summary([])
    assert result.requires == Requires()
    assert (result.bundled_libraries, result.external_libraries) == ((), ())
    assert result.derived_platform_tag is None
    assert result.overclaims is False


GLIBC_CXX = elf(
    needed=("libstdc++.so.6", "libm.so.6", "libc.so.6"),
    version_needs={
        "libc.so.6": ("GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.14"),
        "libm.so.6": ("GLIBC_2.27",),
        "libstdc++.so.6": ("GLIBCXX_3.4.9", "GLIBCXX_3.4.21", "CXXABI_1.3.11", "CXXABI_1.3"),
    },
)


@pytest.mark.parametrize(
    ("elves", "expected"),
    [
        (
            [GLIBC_CXX],
            Requires(libc="glibc", glibc="2.27", glibcxx="3.4.21", cxxabi="1.3.11"),
        ),
        (
            [
                elf(
                    needed=("libgcc_s.so.1",),
                    version_needs={"libgcc_s.so.1": ("GCC_3.0", "GCC_4.2.0")},
                )
            ],
            Requires(gcc="4.2.0"),
        ),
        (  # numbers compare as versions, not strings
            [elf(needed=("libc.so.6",), version_needs={"libc.so.6": ("GLIBC_2.9", "GLIBC_2.10")})],
            Requires(libc="glibc", glibc="2.10"),
        ),
        (
            [elf(needed=("libc.musl-x86_64.so.1",))],
            Requires(libc="musl"),
        ),
        (
            [elf(needed=("libcublasLt.so.11",)), elf("pkg/b.so", soname="libcudart.so.12")],
            Requires(cuda_major=12),
        ),
        (
            [elf(gpu_sms=("9.0", "10.0"), gpu_ptx=("9.0",)), elf("b.so", gpu_sms=("8.6", "9.0"))],
            Requires(gpu_sms=("8.6", "9.0", "10.0"), gpu_ptx=("9.0",)),
        ),
        (  # architecture- and family-specific targets sort after their plain one
            [elf(gpu_sms=("10.0f", "9.0a"), gpu_ptx=("9.0a",)), elf("b.so", gpu_sms=("9.0",))],
            Requires(gpu_sms=("9.0", "9.0a", "10.0f"), gpu_ptx=("9.0a",)),
        ),
        (
            [elf(x86_isa_needed=2), elf("b.so", x86_isa_needed=3), elf("c.so")],
            Requires(x86_64_level=3),
        ),
        (
            [elf(execstack=False), elf("b.so", execstack=True)],
            Requires(execstack=True),
        ),
        (
            [elf(execstack=False)],
            Requires(),
        ),
    ],
)
def test_requires(elves: list[ElfFile], expected: Requires) -> None:
    assert replace(summary(elves).requires, machines=None) == expected


def test_the_machines_are_those_of_the_binaries_an_import_loads() -> None:
    module = elf("pkg/_m.cpython-311-x86_64-linux-gnu.so", needed=("libdep.so.1",),
                 runpath=("$ORIGIN/../pkg.libs",))  # fmt: skip
    dep = elf("pkg.libs/libdep.so.1", machine="aarch64")
    unused = elf("pkg.libs/libother.so.2", machine="i686")  # loaded by no module
    cubin = elf("pkg/kernels/k.cubin", machine="cuda")  # device code, an ELF file too
    program = elf("pkg/bin/helper", machine="riscv64")
    assert summary([module, dep, unused, cubin, program]).requires.machines == (
        "aarch64",
        "x86_64",
    )
    # A wheel of libraries only: other wheels' binaries load them, every one.
    libraries = [elf("pkg/lib/liba.so.1"), elf("pkg/lib/libb.so", machine="i686"), cubin]
    assert summary(libraries).requires.machines == ("i686", "x86_64")
    assert summary([cubin, program]).requires.machines is None


def test_a_pure_wheels_binaries_are_loaded_by_path_for_any_machine_or_libc() -> None:
    """Several machines' and libcs' builds side by side, as pure wheels ship them for
    ctypes: none of them is the import's (`proxy.core.select.foreign_only` judges them)."""
    builds = [
        elf("pkg/lib/x86_64/libfoo.so", needed=("libc.so.6",)),
        elf("pkg/lib/aarch64/libfoo.so", machine="aarch64", needed=("libc.so.6",)),
        elf("pkg/lib/musl/libfoo.so", needed=("libc.musl-x86_64.so.1",)),
    ]
    requires = summary(builds, tag="py3-none-any").requires
    assert (requires.machines, requires.mixed_libc) == (None, None)
    assert summary(builds).requires.machines == ("aarch64", "x86_64")


def test_a_wheel_whose_modules_link_glibc_and_musl_both_loads_nowhere() -> None:
    glibc = elf("pkg/_a.so", needed=("libc.so.6",), version_needs={"libc.so.6": ("GLIBC_2.2.5",)})
    musl = elf("pkg/_b.so", needed=("libc.so",))
    assert summary([glibc, musl]).requires.mixed_libc is True
    assert summary([musl]).requires.mixed_libc is None
    assert summary([glibc]).requires.mixed_libc is None
    # A musl program beside glibc modules is not loaded by an import.
    tool = elf("pkg/bin/tool", needed=("libc.musl-x86_64.so.1",))
    assert summary([glibc, tool]).requires.mixed_libc is None


@pytest.mark.parametrize(
    ("names", "glibc"),
    [
        (("GLIBC_ABI_DT_RELR", "GLIBC_2.2.5"), "2.36"),  # -z pack-relative-relocs
        (("GLIBC_ABI_DT_RELR", "GLIBC_2.38"), "2.38"),
        (("GLIBC_ABI_DT_RELR",), "2.36"),
        # on master after 2.42; backported to 2.38-2.42 branches a host may lack
        (("GLIBC_ABI_GNU2_TLS", "GLIBC_2.17"), "2.43"),
        (("GLIBC_PRIVATE", "GLIBC_2.17"), "2.17"),  # glibc's own libraries': no release
    ],
)
def test_named_glibc_versions_need_the_release_that_defines_them(
    names: tuple[str, ...], glibc: str
) -> None:
    module = elf(needed=("libc.so.6",), version_needs={"libc.so.6": names})
    assert summary([module]).requires.glibc == glibc
    assert summary([module]).requires.glibc_unknown is None


def test_a_glibc_version_name_no_table_knows_needs_a_release_past_them_all() -> None:
    """Dropped, it let every host load a binary the loader refuses on all of them
    but those newer than the tables (GLIBC_ABI_GNU2_TLS before it was listed)."""
    names = ("GLIBC_2.2.5", "GLIBC_ABI_NOT_YET", "GLIBC_2.17", "GLIBC_ABI_DT_RELR")
    module = elf(needed=("libc.so.6",), version_needs={"libc.so.6": names})
    requires = summary([module]).requires
    past = policy_table().glibc_after_known()
    assert past > max(p.glibc for p in policy_table().manylinux)
    assert past > max(policy_table().glibc_named.values())
    assert requires.glibc == f"{past[0]}.{past[1]}"
    assert requires.glibc_unknown == ("GLIBC_ABI_NOT_YET",)
    assert requires.libc == "glibc"
    # a bundled library's needs are not the host's
    bundled = elf(
        needed=("libinner.so",),
        runpath=("$ORIGIN",),
        version_needs={"libinner.so": ("GLIBC_ABI_NOT_YET",)},
    )
    inner = elf("pkg/libinner.so", soname="libinner.so")
    assert summary([bundled, inner]).requires.glibc_unknown is None


def test_glibc_libstdcxx_and_libgcc_are_the_hosts_whatever_the_wheel_ships_by_that_name() -> None:
    """The loader reuses a library of that SONAME the process holds, and the interpreter
    holds glibc's: a copy elsewhere in the wheel (no run path reaches it) is not loaded,
    and the needs stay the host's."""
    module = elf(
        needed=("libc.so.6", "libstdc++.so.6"),
        version_needs={"libc.so.6": ("GLIBC_2.34",), "libstdc++.so.6": ("GLIBCXX_3.4.30",)},
    )
    libc = elf("pkg/sysroot/lib/libc.so.6", soname="libc.so.6")
    libstdcxx = elf("pkg/vendor/libstdc++.so.6", soname="libstdc++.so.6")
    result = summary([module, libc, libstdcxx])
    assert (result.requires.glibc, result.requires.glibcxx) == ("2.34", "3.4.30")
    assert result.bundled_libraries == ()
    # Through a run path, the wheel's libstdc++ is the one (auditwheel's way); libc never.
    reached = replace(module, runpath=("$ORIGIN/../vendor", "$ORIGIN/../sysroot/lib"))
    libstdcxx = elf("vendor/libstdc++.so.6", soname="libstdc++.so.6")
    libc = elf("sysroot/lib/libc.so.6", soname="libc.so.6")
    result = summary([reached, libc, libstdcxx])
    assert (result.requires.glibc, result.requires.glibcxx) == ("2.34", None)
    assert result.bundled_libraries == ("libstdc++.so.6",)


def test_a_programs_run_path_does_not_bring_libstdcxx_into_an_import() -> None:
    """A program the wheel ships finds the wheel's libstdc++ through its run path; the
    module, which has none, gets the process's: its GLIBCXX needs are the host's."""
    module = elf(needed=("libstdc++.so.6",), version_needs={"libstdc++.so.6": ("GLIBCXX_3.4.32",)})
    program = elf("pkg/bin/tool", needed=("libstdc++.so.6",), runpath=("$ORIGIN/../lib",))
    libstdcxx = elf("pkg/lib/libstdc++.so.6", soname="libstdc++.so.6")
    result = summary([module, program, libstdcxx])
    assert result.requires.glibcxx == "3.4.32"
    assert "libstdc++.so.6" in result.external_libraries


def test_the_libstdcxx_a_run_path_loads_serves_every_binary_of_the_wheel() -> None:
    """The loader loads the module's needs first, the wheel's libstdc++ through its run
    path among them; a library it loads with no run path of its own gets that one by
    SONAME, and its GLIBCXX needs are the wheel's copy's to meet."""
    module = elf(needed=("libstdc++.so.6", "libfoo.so"), runpath=("$ORIGIN/lib",))
    libfoo = elf(
        "pkg/lib/libfoo.so",
        needed=("libstdc++.so.6",),
        version_needs={"libstdc++.so.6": ("GLIBCXX_3.4.32",)},
    )
    libstdcxx = elf("pkg/lib/libstdc++.so.6", soname="libstdc++.so.6")
    result = summary([module, libfoo, libstdcxx])
    assert result.requires.glibcxx is None
    assert result.bundled_libraries == ("libfoo.so", "libstdc++.so.6")


def test_versions_needed_from_bundled_libraries_are_not_host_requirements() -> None:
    ext = elf(
        "pkg/_ext.so",
        needed=("libstdc++-abc123.so.6.0.30", "libc.so.6"),
        rpath=("$ORIGIN/../pkg.libs",),
        version_needs={
            "libstdc++-abc123.so.6.0.30": ("GLIBCXX_3.4.30",),
            "libc.so.6": ("GLIBC_2.17",),
        },
    )
    bundled = elf(
        "pkg.libs/libstdc++-abc123.so.6.0.30",
        soname="libstdc++.so.6",
        needed=("libc.so.6",),
        version_needs={"libc.so.6": ("GLIBC_2.18",)},
    )
    result = summary([ext, bundled])
    assert result.bundled_libraries == ("libstdc++-abc123.so.6.0.30",)
    assert result.external_libraries == ("libc.so.6",)
    assert result.requires.glibcxx is None
    assert result.requires.glibc == "2.18"


@pytest.mark.parametrize(
    ("fields", "members", "found"),
    [
        ({"rpath": ("$ORIGIN/../pkg.libs",)}, {"pkg.libs/libx.so.1"}, "pkg.libs/libx.so.1"),
        ({"runpath": ("${ORIGIN}/lib",)}, {"pkg/lib/libx.so.1"}, "pkg/lib/libx.so.1"),
        ({"runpath": ("$ORIGIN",)}, {"pkg/libx.so.1"}, "pkg/libx.so.1"),
        # DT_RUNPATH present: the loader ignores DT_RPATH
        ({"rpath": ("$ORIGIN/a",), "runpath": ("$ORIGIN/b",)}, {"pkg/a/libx.so.1"}, None),
        ({"rpath": ("$ORIGIN/a:$ORIGIN/b",)}, {"pkg/b/libx.so.1"}, None),  # joined: not split
        ({"rpath": ("$ORIGIN/a", "$ORIGIN/b")}, {"pkg/b/libx.so.1"}, "pkg/b/libx.so.1"),
        # absolute and working-directory-relative entries point at the host, not the wheel
        ({"rpath": ("/opt/lib",)}, {"opt/lib/libx.so.1"}, None),
        ({"rpath": ("lib",)}, {"lib/libx.so.1"}, None),
        ({"rpath": ("$ORIGIN/../../outside",)}, {"outside/libx.so.1"}, None),
        ({}, {"pkg/libx.so.1"}, None),  # no search path: the loader never looks in the wheel
    ],
)
def test_resolution_follows_the_loader(
    fields: dict[str, Any], members: set[str], found: str | None
) -> None:
    assert resolve(elf("pkg/_ext.so", **fields), "libx.so.1", members, {}) == found


def test_a_library_the_wheel_ships_under_that_soname_is_bundled() -> None:
    provided = {"libx.so.1": "pkg/deep/libx-1234.so.1"}
    assert resolve(elf(), "libx.so.1", set(), provided) == "pkg/deep/libx-1234.so.1"
    assert resolve(elf(), "dir/libx.so.1", set(), provided) is None


@pytest.mark.parametrize(
    ("tag", "elves", "derived", "overclaims"),
    [
        (X86, [GLIBC_CXX], "manylinux_2_27_x86_64", True),
        ("cp311-cp311-manylinux_2_28_x86_64", [GLIBC_CXX], "manylinux_2_27_x86_64", False),
        ("cp311-cp311-manylinux_2_27_x86_64", [GLIBC_CXX], "manylinux_2_27_x86_64", False),
        (
            "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
            [elf(needed=("libc.so.6",), version_needs={"libc.so.6": ("GLIBC_2.17",)})],
            "manylinux_2_17_x86_64",
            False,
        ),
        (
            "cp311-cp311-manylinux1_x86_64",
            [elf(needed=("libc.so.6",), version_needs={"libc.so.6": ("GLIBC_2.17",)})],
            "manylinux_2_17_x86_64",
            True,
        ),
        ("cp311-cp311-manylinux_2_28_aarch64", [GLIBC_CXX], "manylinux_2_27_x86_64", True),
        ("py3-none-any", [GLIBC_CXX], "manylinux_2_27_x86_64", True),
        ("cp311-cp311-linux_x86_64", [GLIBC_CXX], "manylinux_2_27_x86_64", False),
        ("cp311-cp311-linux_aarch64", [GLIBC_CXX], "manylinux_2_27_x86_64", True),
        ("cp311-cp311-musllinux_1_2_x86_64", [GLIBC_CXX], "manylinux_2_27_x86_64", True),
        ("cp311-cp311-macosx_11_0_arm64", [GLIBC_CXX], "manylinux_2_27_x86_64", False),
        (
            "cp311-cp311-musllinux_1_1_x86_64",
            [elf(needed=("libc.musl-x86_64.so.1",))],
            "musllinux_1_1_x86_64",
            False,
        ),
        (X86, [elf(needed=("libc.musl-x86_64.so.1",))], "musllinux_1_1_x86_64", True),
        (
            X86,
            [elf(needed=("libc.so.6",), version_needs={"libc.so.6": ("GLIBC_PRIVATE",)})],
            None,
            True,
        ),
        (X86, [elf(), elf("b.so", machine="aarch64")], None, True),  # two architectures
        (  # glibc and musl binaries together load nowhere
            X86,
            [elf(needed=("libc.so.6",)), elf("b.so", needed=("libc.musl-x86_64.so.1",))],
            None,
            True,
        ),
        (X86, [elf(machine="aarch64", needed=("libc.so.6",))], "manylinux_2_17_aarch64", True),
        (  # statically linked: any glibc policy of the architecture
            "cp311-cp311-manylinux_2_5_x86_64",
            [elf()],
            "manylinux_2_5_x86_64",
            False,
        ),
    ],
)
def test_derived_tag_and_overclaim(
    tag: str, elves: list[ElfFile], derived: str | None, overclaims: bool
) -> None:
    result = summary(elves, tag)
    assert result.derived_platform_tag == derived
    assert result.overclaims is overclaims


def test_an_unparsable_filename_claims_nothing() -> None:
    result = summarize("not-a-wheel.zip", [GLIBC_CXX], policy_table())
    assert result.overclaims is False
    assert result.derived_platform_tag == "manylinux_2_27_x86_64"


EXT = "pkg/_ext.cpython-311-x86_64-linux-gnu.so"


@pytest.mark.parametrize(
    ("elves", "loads"),
    [
        ([elf(EXT, needed=("libcuda.so.1",))], True),  # an extension module links it
        ([elf("pkg/bin/tool", needed=("libcuda.so",))], True),  # a program
        (  # through a library the module needs, bundled beside it
            [
                elf(EXT, needed=("libkern.so",), runpath=("$ORIGIN",)),
                elf("pkg/libkern.so", soname="libkern.so", needed=("libcuda.so.1",)),
            ],
            True,
        ),
        (  # a library nothing loads at import: opened by dlopen, if at all (torch's nvrtc)
            [
                elf(EXT, needed=("libc.so.6",)),
                elf("torch/lib/libcaffe2_nvrtc.so", needed=("libcuda.so.1", "libnvrtc.so.12")),
            ],
            False,
        ),
        (  # nor what such a library needs in turn
            [
                elf(EXT),
                elf("pkg/libopen.so", needed=("libmid.so",), runpath=("$ORIGIN",)),
                elf("pkg/libmid.so", soname="libmid.so", needed=("libcuda.so.1",)),
            ],
            False,
        ),
        (  # a module named lib is still a module
            [elf("pkg/lib.cpython-311-x86_64-linux-gnu.so", needed=("libcuda.so.1",))],
            True,
        ),
        ([elf("nvidia/x/lib/libx.so.1", needed=("libcuda.so.1",))], True),  # libraries only
        (  # a libcuda the wheel ships is not the driver's (the loader takes the wheel's)
            [
                elf(EXT, needed=("libcuda.so.1",)),
                elf("pkg/libcuda.so.1", soname="libcuda.so.1"),
            ],
            False,
        ),
        ([elf(EXT, needed=("libcudart.so.12",))], False),
    ],
)
def test_a_wheel_that_loads_libcuda_needs_the_driver(elves: list[ElfFile], loads: bool) -> None:
    assert summary(elves).requires.nvidia_driver is (True if loads else None)


@pytest.mark.parametrize(
    ("path", "loaded"),
    [
        ("pkg/_ext.cpython-311-x86_64-linux-gnu.so", True),
        ("pkg/_ext.cpython-313t-aarch64-linux-musl.so", True),
        ("pkg/_ext.pypy310-pp73-x86_64-linux-gnu.so", True),
        ("pkg/_ext.abi3.so", True),
        ("pkg-1.0.data/platlib/pkg/_ext.abi3.so", True),  # installed beside the code
        ("pkg/_ext.so", False),  # untagged: test data, a leftover; nothing says it is imported
        ("pkg_tests/data/corrupt.so", False),
        ("pkg-1.0.dist-info/_ext.abi3.so", False),
        ("pkg-1.0.data/data/share/_ext.abi3.so", False),
        ("pkg/_mac.cpython-311-darwin.so", False),  # a macOS module: no Linux import names it
        ("pkg/libfoo.so", False),  # a library by name (a linker script, often)
        ("pkg/libfoo.so.1", False),
        ("pkg/data/not-a-module.so", False),
    ],
)
def test_a_member_an_import_loads_that_is_no_elf_file(path: str, loaded: bool) -> None:
    """A Git LFS pointer, or a Mach-O file, where the extension module should be: dlopen
    says "invalid ELF header" on every Linux host."""
    requires = summary([], not_elf=(path,)).requires
    assert requires.not_elf == ((path,) if loaded else None)
    # a pure wheel's binaries may be for other systems (`proxy.core.select` judges those)
    assert summary([], "py3-none-any", (path,)).requires.not_elf is None


def test_a_library_a_loaded_module_finds_on_its_run_path_that_is_no_elf_file() -> None:
    module = elf(needed=("libdep.so.1", "libc.so.6"), runpath=("$ORIGIN/../pkg.libs",))
    lfs = ("pkg.libs/libdep.so.1",)
    assert summary([module], not_elf=lfs).requires.not_elf == lfs
    # an ELF file of that name found first is the one loaded
    real = elf("pkg.libs/libdep.so.1", soname="libdep.so.1")
    assert summary([module, real], not_elf=("other/libdep.so.1",)).requires.not_elf is None
    # nothing loads a library no loaded binary needs
    assert summary([elf(needed=("libc.so.6",))], not_elf=lfs).requires.not_elf is None


MODULE_38 = "pkg/_ext.cpython-38-x86_64-linux-gnu.so"


@pytest.mark.parametrize(
    ("paths", "abis"),
    [
        (["pkg/_ext.cpython-38-x86_64-linux-gnu.so"], ("cpython-38",)),
        (["pkg/_ext.cpython-37m-x86_64-linux-gnu.so"], ("cpython-37m",)),
        (["pkg/1abc__mypyc.cpython-311-x86_64-linux-gnu.so"], ("cpython-311",)),  # mypyc
        (["pkg/_ext.cpython-311-arm-linux-gnueabihf.so"], ("cpython-311",)),
        (["pkg/_ext.cpython-313t-aarch64-linux-musl.so"], ("cpython-313t",)),
        (["pkg/_ext.pypy310-pp73-x86_64-linux-gnu.so"], ("pypy310-pp73",)),
        (["pkg/_ext.abi3.so"], ("abi3",)),
        (  # several modules, several interpreters: the judge wants any one of them
            ["pkg/_a.cpython-311-x86_64-linux-gnu.so", "pkg/_a.cpython-312-x86_64-linux-gnu.so"],
            ("cpython-311", "cpython-312"),
        ),
        (["pkg-1.0.data/platlib/pkg/_ext.abi3.so"], ("abi3",)),  # installed beside the code
        # a module every interpreter imports: nothing to judge
        (["pkg/_ext.cpython-38-x86_64-linux-gnu.so", "pkg/_speedups.so"], None),
        # a tag this analyser does not read: not judged
        (["pkg/_ext.cpython-38-x86_64-linux-gnu.so", "pkg/_b.x86_64-linux-gnu.so"], None),
        (["pkg/_e.abi3t.so", "pkg/_h.cpython-315-x86_64-linux-gnu.so"], None),
        (["pkg/_b.abi3-x86_64-linux-gnu.so"], None),
        (["pkg/_ext.cpython-34m.so"], None),  # no machine: no Linux CPython since 3.5
        (["pkg/_ext.cpython-311.so"], None),
        # a library beside the code may be a module (triton's _C/libtriton.so)
        (["triton/_C/libtriton.so", "triton/_h.cpython-38-x86_64-linux-gnu.so"], None),
        # no modules: auditwheel's grafted libraries, versioned libraries, programs
        (
            ["pkg.libs/libfoo-1a2b3c4d.so", "pkg/libbar.so.1", "pkg/bin/tool", MODULE_38],
            ("cpython-38",),
        ),
        (["pkg.libs/libfoo-1a2b3c4d.so.1", "pkg/bin/tool"], None),
        (["pkg-1.0.dist-info/_ext.cpython-38-x86_64-linux-gnu.so"], None),
        (["pkg-1.0.data/data/share/_ext.cpython-38-x86_64-linux-gnu.so"], None),
        (["pkg/_mac.cpython-311-darwin.so"], None),  # no Linux import names it
    ],
)
def test_the_interpreters_a_linux_wheels_modules_are_built_for(
    paths: list[str], abis: tuple[str, ...] | None
) -> None:
    elves = [elf(path) for path in paths]
    assert summary(elves).requires.module_abis == abis
    # a pure wheel's modules are loaded by path, if at all: not judged by interpreter
    assert summary(elves, "py3-none-any").requires.module_abis is None


def test_the_other_systems_binaries_an_import_loads_are_built_for() -> None:
    """glibc's loader maps only ELF files whose header names no system or Linux."""
    module = elf(MODULE_38, needed=("libdep.so.1",), runpath=("$ORIGIN/../pkg.libs",))
    dep = elf("pkg.libs/libdep.so.1", soname="libdep.so.1")
    program = elf("pkg/bin/tool")
    freebsd = {MODULE_38: "freebsd"}
    assert summary([module, dep], systems=freebsd).requires.elf_systems == ("freebsd",)
    # a library the module loads counts as the module does
    loaded = {dep.path: "netbsd"}
    assert summary([module, dep], systems=loaded).requires.elf_systems == ("netbsd",)
    # an import loads no program; a pure wheel's binaries are loaded by path, if at all
    other = summary([module, dep, program], systems={program.path: "freebsd"})
    assert other.requires.elf_systems is None
    pure = summary([module, dep], "py3-none-any", systems=freebsd)
    assert pure.requires.elf_systems is None
    assert summary([module, dep]).requires.elf_systems is None


def test_glibc_named_versions_of_libgcc_s_say_nothing_of_the_libc() -> None:
    """libgcc_s defines a ``GLIBC_2.0`` node on aarch64, on musl as on glibc: pydantic-core's
    musllinux aarch64 module needs it of its bundled libgcc_s, and was taken to link both
    libcs (so no host got the wheel)."""
    musl = "cp311-cp311-musllinux_1_1_aarch64"
    module = elf(
        "pkg/_ext.cpython-311-aarch64-linux-musl.so",
        machine="aarch64",
        needed=("libgcc_s-0bf60adc.so.1", "libc.so"),
        version_needs={"libgcc_s-0bf60adc.so.1": ("GCC_3.3", "GLIBC_2.0", "GCC_4.2.0")},
    )
    grafted = elf(
        "pkg.libs/libgcc_s-0bf60adc.so.1",
        machine="aarch64",
        soname="libgcc_s-0bf60adc.so.1",
        needed=("libc.so",),
    )
    bundled = summary([module, grafted], musl).requires
    assert (bundled.libc, bundled.glibc, bundled.mixed_libc) == ("musl", None, None)
    # Grafted twice (numpy's libgfortran needs libgcc_s-2d945d6c-767fb991.so.1): the same.
    twice = "libgcc_s-2d945d6c-767fb991.so.1"
    gfortran = elf(
        "pkg.libs/libgfortran-67378ab2.so.5",
        machine="aarch64",
        soname="libgfortran-67378ab2.so.5",
        needed=(twice, "libc.musl-aarch64.so.1"),
        version_needs={twice: ("GCC_4.2.0", "GLIBC_2.0")},
    )
    loads = replace(module, needed=(*module.needed, "libgfortran-67378ab2.so.5"))
    grafted_twice = replace(grafted, path=f"pkg.libs/{twice}", soname=twice)
    nested = summary([loads, grafted, gfortran, grafted_twice], musl).requires
    assert (nested.libc, nested.glibc, nested.mixed_libc) == ("musl", None, None)
    # The host's libgcc_s, by its own name: the same.
    hosts = replace(
        module,
        needed=("libgcc_s.so.1", "libc.so"),
        version_needs={"libgcc_s.so.1": ("GCC_3.3", "GLIBC_2.0")},
    )
    external = summary([hosts], musl).requires
    assert (external.libc, external.glibc, external.gcc) == ("musl", None, "3.3")
    # A need of glibc's own libraries still says glibc.
    glibc = replace(
        hosts,
        needed=("libgcc_s.so.1", "libc.so.6"),
        version_needs={"libgcc_s.so.1": ("GLIBC_2.0",), "libc.so.6": ("GLIBC_2.17",)},
    )
    linked = summary([glibc], "cp311-cp311-manylinux_2_17_aarch64").requires
    assert (linked.libc, linked.glibc) == ("glibc", "2.17")


def test_the_executables_an_import_loads() -> None:
    """glibc's loader maps no executable (ET_EXEC) beside the program; a program the wheel
    only ships is not loaded."""
    module = elf(MODULE_38, needed=("libdep.so.1",), runpath=("$ORIGIN/../pkg.libs",))
    dep = elf("pkg.libs/libdep.so.1", soname="libdep.so.1")
    program = elf("pkg/bin/tool")
    elves = [module, dep, program]
    assert summary(elves, executables=(MODULE_38,)).requires.executables == (MODULE_38,)
    assert summary(elves, executables=(dep.path,)).requires.executables == (dep.path,)
    assert summary(elves, executables=(program.path,)).requires.executables is None
    pure = summary(elves, "py3-none-any", executables=(MODULE_38,))
    assert pure.requires.executables is None


def test_the_binaries_glibc_refuses_to_dlopen_that_an_import_loads() -> None:
    """Position-independent executables and objects linked ``-z nodlopen``: only those an
    import loads count, in a Linux wheel."""
    module = elf(MODULE_38, needed=("libdep.so.1",), runpath=("$ORIGIN/../pkg.libs",))
    dep = elf("pkg.libs/libdep.so.1", soname="libdep.so.1", pie=True, no_dlopen=True)
    program = elf("pkg/bin/tool", pie=True, no_dlopen=True)
    loaded = summary([module, dep, program]).requires
    assert (loaded.pie_executables, loaded.no_dlopen) == ((dep.path,), (dep.path,))
    alone = summary([module, program]).requires
    assert (alone.pie_executables, alone.no_dlopen) == (None, None)
    pure = summary([module, dep], "py3-none-any").requires
    assert (pure.pie_executables, pure.no_dlopen) == (None, None)
    itself = summary([replace(module, pie=True)]).requires
    assert (itself.pie_executables, itself.no_dlopen) == ((MODULE_38,), None)


def test_the_binaries_with_initial_exec_tls_an_import_loads() -> None:
    module = elf(MODULE_38, needed=("libdep.so.1",), runpath=("$ORIGIN/../pkg.libs",))
    dep = elf("pkg.libs/libdep.so.1", soname="libdep.so.1", initial_exec_tls=True)
    program = elf("pkg/bin/tool", initial_exec_tls=True)
    assert summary([module, dep, program]).requires.initial_exec_tls == (dep.path,)
    assert summary([module, program]).requires.initial_exec_tls is None
    assert summary([module, dep], "py3-none-any").requires.initial_exec_tls is None
