"""decide() as a table: one row per fact and edge."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from proxy.core.decide import TAG_KEYS, decide, tagged_libc
from proxy.core.libstdcxx import parse_libstdcxx_table
from proxy.core.models import File
from proxy.core.profile import parse_profile
from proxy.core.report import Report, Requires
from proxy.core.tags import client_tags

WHEEL = "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
CU128 = WHEEL.replace("1.0", "1.0+cu128")
CU121 = WHEEL.replace("1.0", "1.0+cu121")
CU118 = WHEEL.replace("1.0", "1.0+cu118")
SASS_AND_PTX_80: dict[str, Any] = {"cuda_major": 12, "gpu_sms": ("8.0",), "gpu_ptx": ("8.0",)}
HOST = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28"
ABI3_WHEEL = "pkg-1.0-cp38-abi3-manylinux_2_17_x86_64.whl"


@dataclass(frozen=True)
class Row:
    id: str
    profile: str
    requires: dict[str, Any] | None = None  # None: no report at all
    hides: tuple[str, ...] = ()  # reason kinds, in order
    filename: str = WHEEL
    status: str = "ok"
    consulted: frozenset[str] | None = None  # checked when given
    messages: tuple[str, ...] = field(default=())  # checked when given


ROWS = [
    # files and reports
    Row("sdist-no-report", HOST, None, filename="pkg-1.0.tar.gz", consulted=frozenset()),
    Row("any-wheel-no-facts", "", None, filename="pkg-1.0-py3-none-any.whl", consulted=TAG_KEYS),
    Row("bad-wheel-name", HOST, None, filename="pkg.whl", consulted=frozenset()),
    Row("missing-report-tags-only", HOST, None, consulted=TAG_KEYS),
    Row(
        "missing-report-tags-hide",
        "python=3.12",
        None,
        hides=("tags",),
        messages=("tags: cp311-cp311-manylinux_2_17_x86_64 does not fit python=3.12",),
    ),
    # Nothing vouches for bytes that could not be read; nor are their requirements read.
    Row(
        "unanalysable-is-hidden",
        HOST,
        {"glibc": "2.99"},
        status="unanalysable",
        hides=("unanalysable",),
        messages=("unanalysable: zip is corrupt",),
    ),
    # ... but a host that told nothing is not judged (as on its unfiltered pages)
    Row("unanalysable-host-told-nothing", "", {"glibc": "2.99"}, status="unanalysable"),
    Row("needs-nothing", HOST, {}, consulted=TAG_KEYS),
    Row(
        "build-tag-in-name",
        "python=3.10",
        None,
        filename="pkg-1.0-1build-cp311-cp311-manylinux_2_17_x86_64.whl",
        hides=("tags",),
        messages=("tags: cp311-cp311-manylinux_2_17_x86_64 does not fit python=3.10",),
    ),
    # libc family
    Row(
        "glibc-wheel-musl-host",
        "libc=musl-1.2",
        {"libc": "glibc", "glibc": "2.17"},
        hides=("libc",),
        messages=("libc: needs glibc, host has musl 1.2",),
    ),
    Row("glibc-version-only-musl-host", "libc=musl-1.2", {"glibc": "2.17"}, hides=("libc",)),
    Row("musl-wheel-glibc-host", HOST, {"libc": "musl"}, hides=("libc",)),
    Row("musl-wheel-musl-host", "libc=musl-1.1", {"libc": "musl"}),
    Row("libc-unknown", "python=3.11", {"libc": "glibc", "glibc": "2.99"}),
    # pip on musl tells no libc: the libc a wheel's tags admit is the one it installs on
    Row(
        "glibc-linked-musllinux-libc-untold",
        "python=3.11,impl=cp,arch=x86_64",
        {"libc": "glibc", "glibc": "2.17"},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        hides=("libc",),
        messages=("libc: needs glibc; its tags admit musl only",),
    ),
    Row(
        "musl-linked-manylinux-libc-untold",
        "python=3.11,impl=cp,arch=x86_64",
        {"libc": "musl"},
        hides=("libc",),
        messages=("libc: needs musl; its tags admit glibc only",),
    ),
    Row(
        "glibc-linked-linux-tag-libc-untold",
        "python=3.11,impl=cp,arch=x86_64",
        {"libc": "glibc", "glibc": "2.17"},
        filename="pkg-1.0-cp311-cp311-linux_x86_64.whl",
    ),
    Row(
        "glibc-linked-musllinux-nothing-told",
        "",
        {"libc": "glibc", "glibc": "2.17"},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ),
    # glibc
    Row(
        "glibc-newer",
        HOST,
        {"libc": "glibc", "glibc": "2.34"},
        hides=("glibc",),
        messages=("glibc: needs 2.34, host has 2.28",),
    ),
    Row("glibc-equal", HOST, {"libc": "glibc", "glibc": "2.28"}),
    Row("glibc-three-part", HOST, {"libc": "glibc", "glibc": "2.2.5"}),
    Row("glibc-unparsable", HOST, {"libc": "glibc", "glibc": "2.x"}),
    # a named version no table knows: past every release they know, and named
    Row(
        "glibc-unknown-name",
        HOST,
        {"libc": "glibc", "glibc": "2.44", "glibc_unknown": ("GLIBC_ABI_NOT_YET",)},
        hides=("glibc",),
        messages=(
            "glibc: needs GLIBC_ABI_NOT_YET, which no glibc release known here defines"
            " (so 2.44 or newer), host has 2.28",
        ),
    ),
    Row(
        "glibc-unknown-name-newer-host",
        "libc=glibc-2.44",
        {"libc": "glibc", "glibc": "2.44", "glibc_unknown": ("GLIBC_ABI_NOT_YET",)},
    ),
    # glibcxx
    Row(
        "glibcxx-newer",
        "glibcxx=3.4.25",
        {"glibcxx": "3.4.29"},
        hides=("glibcxx",),
        messages=("glibcxx: needs 3.4.29, host has 3.4.25",),
        consulted=TAG_KEYS | {"glibcxx"},
    ),
    Row("glibcxx-equal", "glibcxx=3.4.29", {"glibcxx": "3.4.29"}),
    Row("glibcxx-older", "glibcxx=3.4.30", {"glibcxx": "3.4.19"}),
    Row("glibcxx-unknown", HOST, {"glibcxx": "3.4.33"}),
    # cxxabi, through the GLIBCXX -> CXXABI table
    Row(
        "cxxabi-newer",
        "glibcxx=3.4.25",
        {"cxxabi": "1.3.13"},
        hides=("cxxabi",),
        messages=("cxxabi: needs 1.3.13, host has 1.3.11 (libstdc++ with GLIBCXX 3.4.25)",),
    ),
    Row("cxxabi-equal", "glibcxx=3.4.25", {"cxxabi": "1.3.11"}),
    Row("cxxabi-between-releases", "glibcxx=3.4.29", {"cxxabi": "1.3.13"}),
    Row("cxxabi-past-the-table-known", "glibcxx=3.4.40", {"cxxabi": "1.3.15"}),
    Row("cxxabi-past-the-table-unknown", "glibcxx=3.4.40", {"cxxabi": "1.3.16"}),
    Row("cxxabi-host-unknown", HOST, {"cxxabi": "1.3.13"}),
    Row(
        "glibcxx-and-cxxabi",
        "glibcxx=3.4.21",
        {"glibcxx": "3.4.22", "cxxabi": "1.3.10"},
        hides=("glibcxx", "cxxabi"),
    ),
    # libgcc_s's GCC_x versions, against the GCC the host's libstdc++ comes from
    Row(
        "gcc-newer",
        "glibcxx=3.4.25",
        {"gcc": "12.0.0"},
        hides=("gcc",),
        messages=(
            "gcc: needs GCC_12.0.0 (libgcc_s of GCC 12.1.0 or newer), host's is of a GCC"
            " older than 9.1.0 (libstdc++ with GLIBCXX 3.4.25)",
        ),
        consulted=TAG_KEYS | {"glibcxx"},
    ),
    # GCC 11's libstdc++ (3.4.29): GCC_12.0.0 first came with 12.1.0, the next GLIBCXX's
    Row("gcc-the-next-major", "glibcxx=3.4.29", {"gcc": "12.0.0"}, hides=("gcc",)),
    Row("gcc-same-major", "glibcxx=3.4.30", {"gcc": "12.0.0"}),
    Row("gcc-older", "glibcxx=3.4.25", {"gcc": "7.0.0"}),
    Row("gcc-two-part-node", "glibcxx=3.4.28", {"gcc": "11.0"}, hides=("gcc",)),
    Row("gcc-before-gcc-5", "glibcxx=3.4.17", {"gcc": "4.8.0"}, hides=("gcc",)),
    # GLIBCXX 3.4.3 is GCC 3.4.3 to 3.4.6's: 3.4.4 and later may have GCC_3.4.4
    Row("gcc-point-release-may-have-it", "glibcxx=3.4.3", {"gcc": "3.4.4"}),
    Row("gcc-past-the-table", "glibcxx=3.4.33", {"gcc": "15.0.0"}),
    Row("gcc-beyond-the-table", "glibcxx=3.4.40", {"gcc": "15.0.0"}),
    Row("gcc-unparsable", "glibcxx=3.4.25", {"gcc": "12.x"}),
    # the glibc alone says nothing of the newest libgcc_s a host has
    Row(
        "gcc-glibc-only",
        "libc=glibc-2.17",
        {"libc": "glibc", "glibc": "2.17", "gcc": "12.0.0"},
        consulted=TAG_KEYS | {"glibcxx"},
    ),
    # executable stack
    Row(
        "execstack-glibc-2.41",
        "libc=glibc-2.41",
        {"execstack": True},
        hides=("execstack",),
        messages=(
            "execstack: needs an executable stack, which glibc 2.41 and newer refuse"
            " (host has 2.41)",
        ),
    ),
    Row("execstack-glibc-2.42", "libc=glibc-2.42", {"execstack": True}, hides=("execstack",)),
    Row("execstack-glibc-2.40", "libc=glibc-2.40", {"execstack": True}),
    Row("execstack-musl", "libc=musl-1.2", {"execstack": True}),
    Row("execstack-unknown", "python=3.11", {"execstack": True}),
    Row(
        "no-execstack",
        "libc=glibc-2.41",
        {"execstack": False},
        consulted=TAG_KEYS,
    ),
    # CUDA
    Row("cuda-same-major", "cuda=12.4", {"cuda_major": 12}),
    Row("cuda-major-floor", "cuda=12.0", {"cuda_major": 12}),
    Row("cuda-newer-major", "cuda=13.0", {"cuda_major": 12}),
    Row(
        "cuda-older-major",
        "cuda=11.8",
        {"cuda_major": 12},
        hides=("cuda",),
        messages=("cuda: needs CUDA 12, host driver supports 11.8",),
    ),
    Row(
        "cuda-none",
        "cuda=none",
        {"cuda_major": 12},
        hides=("cuda",),
        messages=("cuda: needs CUDA 12, host has no NVIDIA driver",),
        consulted=TAG_KEYS | {"cuda"},
    ),
    Row("cuda-unknown", HOST, {"cuda_major": 12}),
    Row("cpu-wheel-cuda-none", "cuda=none", {}, consulted=TAG_KEYS),
    Row(
        "libcuda-no-driver",
        "cuda=none",
        {"nvidia_driver": True},
        hides=("cuda",),
        messages=("cuda: loads libcuda.so.1, host has no NVIDIA driver",),
        consulted=TAG_KEYS | {"cuda"},
    ),
    Row("libcuda-any-driver", "cuda=11.8", {"nvidia_driver": True}),
    Row("libcuda-unknown-host", HOST, {"nvidia_driver": True}),
    Row(
        "libcuda-and-older-major",
        "cuda=11.8",
        {"nvidia_driver": True, "cuda_major": 12},
        hides=("cuda",),
        messages=("cuda: needs CUDA 12, host driver supports 11.8",),
    ),
    # GPU architectures
    Row("sm-same-major-older-minor", "sm=8.6", {"gpu_sms": ("8.0", "9.0")}),
    Row("sm-exact", "sm=9.0", {"gpu_sms": ("9.0",)}),
    Row(
        "sm-missing",
        "sm=8.6",
        {"gpu_sms": ("9.0", "10.0")},
        hides=("sm",),
        messages=("sm: kernels for 9.0, 10.0; host GPUs are 8.6",),
    ),
    Row("sm-newer-minor-same-major", "sm=8.0", {"gpu_sms": ("8.6",)}, hides=("sm",)),
    Row("sm-no-cross-major", "sm=9.0", {"gpu_sms": ("8.0",)}, hides=("sm",)),
    Row("sm-arch-specific-exact", "sm=9.0", {"gpu_sms": ("9.0a",)}),
    Row("sm-arch-specific-other", "sm=10.0", {"gpu_sms": ("9.0a",)}, hides=("sm",)),
    Row("sm-family", "sm=10.3", {"gpu_sms": ("10.0f",)}),
    Row("sm-arch-specific-only-9.0a", "sm=9.0", {"cuda_major": 12, "gpu_sms": ("9.0a",)}),
    Row(
        "sm-arch-specific-only-9.0a-newer-gpu",
        "sm=10.0",
        {"cuda_major": 12, "gpu_sms": ("9.0a",)},
        hides=("sm",),
        messages=("sm: kernels for 9.0a; host GPUs are 10.0",),
    ),
    Row(
        "sm-arch-specific-same-major-newer-minor", "sm=10.3", {"gpu_sms": ("10.0a",)}, hides=("sm",)
    ),
    Row("sm-family-other-major", "sm=12.0", {"gpu_sms": ("10.0f",)}, hides=("sm",)),
    Row("sm-family-older-minor", "sm=10.0", {"gpu_sms": ("10.3f",)}, hides=("sm",)),
    Row("sm-arch-specific-ptx-exact", "sm=9.0", {"gpu_ptx": ("9.0a",)}),
    Row(
        "sm-arch-specific-ptx-no-jit-forwards",
        "sm=10.0",
        {"gpu_sms": ("9.0a",), "gpu_ptx": ("9.0a",)},
        hides=("sm",),
        messages=("sm: kernels for 9.0a, PTX 9.0a; host GPUs are 10.0",),
    ),
    Row("sm-family-ptx", "sm=10.3", {"gpu_ptx": ("10.0f",)}),
    Row("sm-ptx-forward", "sm=12.0", {"gpu_ptx": ("8.0",)}),
    Row("sm-ptx-equal", "sm=8.0", {"gpu_ptx": ("8.0",)}),
    Row(
        "sm-ptx-too-new",
        "sm=8.9",
        {"gpu_sms": ("9.0",), "gpu_ptx": ("9.0",)},
        hides=("sm",),
        messages=("sm: kernels for 9.0, PTX 9.0; host GPUs are 8.9",),
    ),
    Row("sm-sass-misses-ptx-saves", "sm=9.0", {"gpu_sms": ("8.0", "8.6"), "gpu_ptx": ("8.6",)}),
    Row("sm-unreadable-ptx", "sm=7.5", {"gpu_sms": ("9.0",), "gpu_ptx": ("compute_90",)}),
    Row("sm-ptx-empty", "sm=8.6", {"gpu_sms": (), "gpu_ptx": ()}, consulted=TAG_KEYS),
    Row("sm-one-of-several-gpus", "sm=7.5+9.0", {"gpu_sms": ("9.0",)}),
    Row("sm-unreadable-target", "sm=8.6", {"gpu_sms": ("9.0", "sm_86")}),
    Row("sm-unknown", HOST, {"gpu_sms": ("9.0",)}),
    Row("sm-empty", "sm=8.6", {"gpu_sms": ()}, consulted=TAG_KEYS),
    # a newer minor of the host's CUDA major (the build label): minor version
    # compatibility runs SASS only; PTX from the newer toolkit is refused by the driver
    Row("minor-sass-runs", "cuda=12.4,sm=8.6", SASS_AND_PTX_80, filename=CU128),
    Row(
        "minor-only-through-ptx",
        "cuda=12.4,sm=9.0",
        SASS_AND_PTX_80,
        filename=CU128,
        hides=("cuda",),
        consulted=TAG_KEYS | {"cuda", "sm"},
        messages=(
            "cuda: built with CUDA 12.8 (+cu128), host driver supports 12.4 (minor version"
            " compatibility: PTX from a newer toolkit is not JIT-compiled); kernels for 8.0,"
            " PTX 8.0: host GPUs 9.0 only through PTX",
        ),
    ),
    Row("native-ptx-jit", "cuda=12.8,sm=9.0", SASS_AND_PTX_80, filename=CU128),
    Row("older-toolkit-ptx-jit", "cuda=12.4,sm=9.0", SASS_AND_PTX_80, filename=CU121),
    Row(
        "older-major-ptx-jit",
        "cuda=12.4,sm=9.0",
        {**SASS_AND_PTX_80, "cuda_major": 11},
        filename=CU118,
    ),
    Row(
        "minor-ptx-only-gpus-unknown",
        "cuda=12.4",
        {"cuda_major": 12, "gpu_ptx": ("8.0",)},
        filename=CU128,
        hides=("cuda",),
        messages=(
            "cuda: built with CUDA 12.8 (+cu128), host driver supports 12.4 (minor version"
            " compatibility: PTX from a newer toolkit is not JIT-compiled); it has PTX 8.0 and"
            " no SASS",
        ),
    ),
    Row("minor-sass-gpus-unknown", "cuda=12.4", SASS_AND_PTX_80, filename=CU128),
    Row(
        "minor-no-gpu-code",
        "cuda=12.4,sm=9.0",
        {"cuda_major": 12},
        filename=CU128,
        consulted=TAG_KEYS | {"cuda"},
    ),
    Row("minor-one-gpu-from-sass", "cuda=12.4,sm=8.6+9.0", SASS_AND_PTX_80, filename=CU128),
    Row(
        "minor-nothing-runs-is-sm",
        "cuda=12.4,sm=6.1",
        SASS_AND_PTX_80,
        filename=CU128,
        hides=("sm",),
    ),
    Row(
        "minor-unreadable-sass",
        "cuda=12.4,sm=9.0",
        {"cuda_major": 12, "gpu_sms": ("sm_90",), "gpu_ptx": ("8.0",)},
        filename=CU128,
    ),
    Row(
        "minor-static-runtime",
        "cuda=12.4,sm=9.0",
        {"gpu_sms": ("8.0",), "gpu_ptx": ("8.0",)},
        filename=CU128,
        hides=("cuda",),
    ),
    Row(
        "no-minor-compatibility-before-11",
        "cuda=10.1",
        {"cuda_major": 10},
        filename="pkg-1.0+cu102-cp311-cp311-manylinux_2_17_x86_64.whl",
        hides=("cuda",),
        messages=(
            "cuda: built with CUDA 10.2 (+cu102), host driver supports 10.1; CUDA 10 has no"
            " minor version compatibility",
        ),
    ),
    # a driver for 11.0 may be below 11's floor: SASS may run, PTX runs in no case
    Row(
        "floor-unsure-sass",
        "cuda=11.0,sm=8.6",
        {"cuda_major": 11, "gpu_sms": ("8.6",)},
        filename=CU118,
    ),
    Row(
        "floor-unsure-ptx",
        "cuda=11.0,sm=9.0",
        {**SASS_AND_PTX_80, "cuda_major": 11},
        filename=CU118,
        hides=("cuda",),
    ),
    Row(
        "label-of-another-major",
        "cuda=12.4,sm=9.0",
        {**SASS_AND_PTX_80, "cuda_major": 11},
        filename=CU128,
    ),
    Row("no-label-majors-only", "cuda=12.4,sm=9.0", SASS_AND_PTX_80),
    Row(
        "cpu-label",
        "cuda=12.4,sm=9.0",
        {},
        filename=WHEEL.replace("1.0", "1.0+cpu"),
        consulted=TAG_KEYS,
    ),
    Row("minor-cuda-unknown", HOST, {"cuda_major": 12, "gpu_ptx": ("8.0",)}, filename=CU128),
    Row("minor-no-driver", "cuda=none", {"cuda_major": 12}, filename=CU128, hides=("cuda",)),
    # x86-64 level
    Row(
        "isa-higher",
        "isa=x86-64-v2",
        {"x86_64_level": 3},
        hides=("isa",),
        messages=("isa: needs x86-64-v3, host is x86-64-v2",),
    ),
    Row("isa-equal", "isa=x86-64-v3", {"x86_64_level": 3}),
    Row("isa-lower", "isa=x86-64-v4", {"x86_64_level": 2}),
    Row("isa-unknown", HOST, {"x86_64_level": 4}),
    # the machine of the binaries an import loads, whatever the wheel's tag says
    Row(
        "machine-other",
        HOST,
        {"machines": ("aarch64",)},
        hides=("native",),
        messages=("native: binaries an import loads are for aarch64, host is x86_64",),
    ),
    Row("machine-32-bit", HOST, {"machines": ("i686", "x86_64")}, hides=("native",)),
    Row("machine-same", HOST, {"machines": ("x86_64",)}),
    Row("machine-host-untold", "libc=glibc-2.28", {"machines": ("aarch64",)}),
    # the kernel's names for a 32-bit userland are all EM_ARM's, or EM_386's
    Row("machine-arm-family", "arch=armv6l", {"machines": ("armv7l",)}),
    Row("machine-x86-family", "arch=i386", {"machines": ("i686",)}),
    Row("machine-arm64", "arch=aarch64", {"machines": ("armv7l",)}, hides=("native",)),
    # an extension module that is no ELF file (a Git LFS pointer): no Linux host loads it
    Row(
        "not-elf-module",
        HOST,
        {"not_elf": ("pkg/_ext.cpython-311-x86_64-linux-gnu.so",)},
        hides=("native",),
        messages=(
            "native: an import loads pkg/_ext.cpython-311-x86_64-linux-gnu.so, which no"
            " Linux loader maps (no ELF shared object): the load fails on every Linux host",
        ),
        consulted=TAG_KEYS,
    ),
    Row(
        "not-elf-many",
        "arch=x86_64",
        {"not_elf": ("a/_1.so", "a/_2.so", "a/_3.so", "a/_4.so", "a/_5.so")},
        hides=("native",),
        messages=(
            "native: an import loads a/_1.so, a/_2.so, a/_3.so and 2 more, which no Linux"
            " loader maps (no ELF shared object): the load fails on every Linux host",
        ),
    ),
    Row("not-elf-host-untold", "libc=glibc-2.28", {"not_elf": ("pkg/_ext.so",)}),
    # binaries an import loads built for another system: "ELF file OS ABI invalid"
    Row(
        "elf-system-freebsd",
        HOST,
        {"elf_systems": ("freebsd",)},
        hides=("native",),
        messages=(
            "native: binaries an import loads are built for freebsd: glibc's loader refuses them",
        ),
        consulted=TAG_KEYS,
    ),
    # musl's loader does not read the header's system; a libc untold is not judged
    Row(
        "elf-system-musl",
        "python=3.11,impl=cp,arch=x86_64,libc=musl-1.2",
        {"elf_systems": ("freebsd",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ),
    # a host that told no libc (pip on musl tells none) installs a manylinux wheel only
    # on glibc; a linux_* wheel on either
    Row(
        "elf-system-libc-untold-manylinux",
        "arch=x86_64",
        {"elf_systems": ("freebsd",)},
        hides=("native",),
    ),
    Row(
        "elf-system-libc-untold-linux",
        "arch=x86_64",
        {"elf_systems": ("freebsd",)},
        filename="pkg-1.0-cp311-cp311-linux_x86_64.whl",
    ),
    # an executable an import loads: "cannot dynamically load executable", on glibc
    Row(
        "executable-glibc",
        HOST,
        {"executables": ("pkg/_ext.so", "pkg/a.so", "pkg/b.so", "pkg/c.so")},
        hides=("native",),
        messages=(
            "native: an import loads pkg/_ext.so, pkg/a.so, pkg/b.so and 1 more, linked as an"
            " executable: glibc's loader loads no executable beside the program",
        ),
        consulted=TAG_KEYS,
    ),
    # musl's loader maps one; a libc untold is not judged
    Row(
        "executable-musl",
        "python=3.11,impl=cp,arch=x86_64,libc=musl-1.2",
        {"executables": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ),
    Row(
        "executable-libc-untold-manylinux",
        "arch=x86_64",
        {"executables": ("pkg/_ext.so",)},
        hides=("native",),
    ),
    Row(
        "executable-libc-untold-both",
        "arch=x86_64",
        {"executables": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.musllinux_1_2_x86_64.whl",
    ),
    # a position-independent executable an import loads: glibc 2.30 and newer refuse it,
    # and 2.28 and 2.29 as distributions ship them (the release branches took the change)
    Row(
        "pie-glibc",
        "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.35",
        {"pie_executables": ("pkg/_ext.so",)},
        hides=("native",),
        messages=(
            "native: an import loads pkg/_ext.so, linked as a position-independent"
            " executable: glibc's loader refuses those (2.28 and newer)",
        ),
        consulted=TAG_KEYS,
    ),
    Row(
        "pie-glibc-2.27",
        "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.27",
        {"pie_executables": ("pkg/_ext.so",)},
    ),
    Row(
        "pie-glibc-2.28",
        "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28",
        {"pie_executables": ("pkg/_ext.so",)},
        hides=("native",),
    ),
    Row(
        "pie-musl",
        "python=3.11,impl=cp,arch=x86_64,libc=musl-1.2",
        {"pie_executables": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ),
    # a libc untold: the tags' oldest glibc decides (manylinux_2_17 may be older than 2.28)
    Row("pie-libc-untold-2-17", "arch=x86_64", {"pie_executables": ("pkg/_ext.so",)}),
    Row(
        "pie-libc-untold-2-34",
        "arch=x86_64",
        {"pie_executables": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.whl",
        hides=("native",),
    ),
    # ld -z nodlopen: glibc refuses every dlopen of it, an import's included
    Row(
        "no-dlopen-glibc",
        "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17",
        {"no_dlopen": ("pkg.libs/libdep.so",)},
        hides=("native",),
        messages=(
            "native: an import loads pkg.libs/libdep.so, marked never to be loaded by dlopen"
            " (-z nodlopen): glibc's loader refuses it",
        ),
    ),
    Row(
        "no-dlopen-musl",
        "python=3.11,impl=cp,arch=x86_64,libc=musl-1.2",
        {"no_dlopen": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ),
    Row("no-dlopen-no-machine-told", "python=3.11", {"no_dlopen": ("pkg/_ext.so",)}),
    # initial-exec TLS of a module's own: musl (1.1.20 on) refuses it under dlopen
    Row(
        "ie-tls-musl",
        "python=3.11,impl=cp,arch=x86_64,libc=musl-1.2",
        {"initial_exec_tls": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        hides=("native",),
        messages=(
            "native: an import loads pkg/_ext.so with initial-exec TLS of its own, which"
            " musl's loader refuses under dlopen (host has musl 1.2)",
        ),
    ),
    Row(
        "ie-tls-musl-1.1",
        "python=3.11,impl=cp,arch=x86_64,libc=musl-1.1",
        {"initial_exec_tls": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_1_x86_64.whl",
    ),
    Row("ie-tls-glibc", HOST, {"initial_exec_tls": ("pkg/_ext.so",)}),
    # a host that told no machine is no Linux host known so (hostfit takes none from a
    # macOS or Windows client): the wheel's tags imply nothing of it
    Row(
        "ie-tls-nothing-told",
        "",
        {"initial_exec_tls": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ),
    Row(
        "executable-no-machine-told",
        "python=3.11,impl=cp",
        {"executables": ("pkg/_ext.so",)},
    ),
    Row("ie-tls-libc-untold", "arch=x86_64", {"initial_exec_tls": ("pkg/_ext.so",)}),
    # pip on musl tells no libc; only musl 1.2 and newer install a musllinux_1_2 wheel
    Row(
        "ie-tls-libc-untold-musllinux-1-2",
        "python=3.11,impl=cp,arch=x86_64",
        {"initial_exec_tls": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        hides=("native",),
        messages=(
            "native: an import loads pkg/_ext.so with initial-exec TLS of its own, which"
            " musl's loader refuses under dlopen (the wheel's tags admit musl 1.2 and"
            " newer only)",
        ),
    ),
    Row(
        "ie-tls-libc-untold-musllinux-1-1",
        "python=3.11,impl=cp,arch=x86_64",
        {"initial_exec_tls": ("pkg/_ext.so",)},
        filename="pkg-1.0-cp311-cp311-musllinux_1_1_x86_64.musllinux_1_2_x86_64.whl",
    ),
    # extension modules all built for other interpreters: the import finds none of them
    Row(
        "module-abi-other-version",
        HOST,
        {"module_abis": ("cpython-38",)},
        filename=ABI3_WHEEL,
        hides=("native",),
        messages=(
            "native: its extension modules are built for cpython-38, which CPython 3.11"
            " does not import",
        ),
        consulted=TAG_KEYS,
    ),
    Row("module-abi-same", HOST, {"module_abis": ("cpython-311",)}, filename=ABI3_WHEEL),
    # a wheel for another Python: its tags say so, the installer's own check (not a
    # reason of loading, which the gate would refuse a download on)
    Row(
        "module-abi-tags-misfit",
        HOST,
        {"module_abis": ("cpython-312",)},
        filename="pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
        hides=("tags",),
    ),
    Row("module-abi-one-of", HOST, {"module_abis": ("cpython-310", "cpython-311")}),
    Row("module-abi-build-flags", HOST, {"module_abis": ("cpython-311d", "cpython-311t")}),
    Row("module-abi-abi3", HOST, {"module_abis": ("abi3",)}, filename=ABI3_WHEEL),
    Row(
        "module-abi-abi3-on-pypy",
        "python=3.10,impl=pp",
        {"module_abis": ("abi3",)},
        filename="pkg-1.0-py3-none-manylinux_2_17_x86_64.whl",
        hides=("native",),
        messages=(
            "native: its extension modules are built for abi3, which PyPy 3.10 does not import",
        ),
    ),
    Row(
        "module-abi-pypy",
        "python=3.10,impl=pp",
        {"module_abis": ("pypy310-pp73",)},
        filename="pkg-1.0-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl",
    ),
    Row(
        "module-abi-cpython-on-pypy",
        "python=3.10,impl=pp",
        {"module_abis": ("cpython-310",)},
        filename="pkg-1.0-py3-none-manylinux_2_17_x86_64.whl",
        hides=("native",),
        consulted=TAG_KEYS,
    ),
    Row(
        "module-abi-old-pymalloc-flag",
        "python=3.7,impl=cp",
        {"module_abis": ("cpython-37m",)},
        filename="pkg-1.0-cp37-abi3-manylinux_2_17_x86_64.whl",
    ),
    # an implementation untold may be either; another one is not judged
    Row(
        "module-abi-impl-untold-pypy",
        "python=3.10",
        {"module_abis": ("pypy310-pp73",)},
        filename="pkg-1.0-py3-none-manylinux_2_17_x86_64.whl",
    ),
    Row(
        "module-abi-impl-untold",
        "python=3.10",
        {"module_abis": ("cpython-38",)},
        filename="pkg-1.0-py3-none-manylinux_2_17_x86_64.whl",
        hides=("native",),
        messages=(
            "native: its extension modules are built for cpython-38, which Python 3.10"
            " does not import",
        ),
    ),
    Row(
        "module-abi-other-impl",
        "python=3.11,impl=gp",
        {"module_abis": ("cpython-38",)},
        filename="pkg-1.0-py3-none-manylinux_2_17_x86_64.whl",
    ),
    Row(
        "module-abi-python-untold",
        "arch=x86_64",
        {"module_abis": ("cpython-38",)},
        filename=ABI3_WHEEL,
        consulted=TAG_KEYS,
    ),
    Row(
        "mixed-libc",
        "libc=musl-1.2",
        {"libc": "glibc", "mixed_libc": True},
        hides=("libc", "libc"),
        messages=(
            "libc: needs glibc, host has musl 1.2",
            "libc: binaries an import loads link both glibc and musl: no host has both",
        ),
    ),
    Row("mixed-libc-glibc-host", HOST, {"libc": "glibc", "mixed_libc": True}, hides=("libc",)),
    # no host has both libcs: every Linux host is judged, one that told only its machine too
    Row(
        "mixed-libc-untold",
        "arch=x86_64",
        {"libc": "glibc", "mixed_libc": True},
        hides=("libc",),
        messages=("libc: binaries an import loads link both glibc and musl: no host has both",),
    ),
    Row("mixed-libc-nothing-told", "python=3.11", {"libc": "glibc", "mixed_libc": True}),
    # several at once: every reason, in check order
    Row(
        "everything-wrong",
        "python=3.12,libc=glibc-2.17,glibcxx=3.4.19,cuda=11.8,sm=7.5,isa=x86-64-v2",
        {
            "libc": "glibc",
            "glibc": "2.28",
            "glibcxx": "3.4.21",
            "cxxabi": "1.3.9",
            "cuda_major": 12,
            "gpu_sms": ("8.0",),
            "x86_64_level": 3,
        },
        hides=("tags", "glibc", "glibcxx", "cxxabi", "cuda", "sm", "isa"),
        consulted=TAG_KEYS | {"glibcxx", "cuda", "sm", "isa"},
    ),
    Row(
        "everything-fine",
        "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.35,glibcxx=3.4.30,cuda=12.4,sm=8.9,"
        "isa=x86-64-v3",
        {
            "libc": "glibc",
            "glibc": "2.28",
            "glibcxx": "3.4.21",
            "cxxabi": "1.3.9",
            "cuda_major": 12,
            "gpu_sms": ("8.0",),
            "x86_64_level": 3,
            "execstack": False,
            "gcc": "7.0.0",
        },
    ),
]


def _report(row: Row) -> Report | None:
    if row.requires is None:
        return None
    report = Report(filename=row.filename, sha256="0" * 64, requires=Requires(**row.requires))
    if row.status == "unanalysable":
        # requirements left in place: decide must not read them from such a report
        return replace(report, status="unanalysable", reason="zip is corrupt")
    return report


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decide(row: Row) -> None:
    file = File(filename=row.filename, url=f"https://upstream.invalid/{row.filename}", hashes={})
    profile = parse_profile(row.profile, "url")
    verdict = decide(file, _report(row), profile)
    assert tuple(r.kind for r in verdict.reasons) == row.hides
    assert verdict.keep is (not row.hides)
    assert verdict.action == ("hide" if row.hides else "keep")
    if row.messages:
        assert tuple(r.message for r in verdict.reasons) == row.messages
    if row.consulted is not None:
        assert verdict.consulted == row.consulted
    # the same with tags computed once for the page
    assert decide(file, _report(row), profile, tags=client_tags(profile)) == verdict


def test_every_message_starts_with_its_kind() -> None:
    for row in ROWS:
        file = File(filename=row.filename, url="u", hashes={})
        for reason in decide(file, _report(row), parse_profile(row.profile, "url")).reasons:
            assert reason.message.startswith(f"{reason.kind}: ")


def test_cxxabi_follows_the_table_it_is_given() -> None:
    table = parse_libstdcxx_table(
        {
            "sources": {"test": "a made-up table"},
            "releases": [
                {"gcc": "1.0", "glibcxx": "3.4", "cxxabi": "1.3", "source": "test"},
                {"gcc": "2.0", "glibcxx": "3.4.50", "cxxabi": "1.3.50", "source": "test"},
            ],
        }
    )
    file = File(filename=WHEEL, url="u", hashes={})
    report = Report(filename=WHEEL, sha256="0" * 64, requires=Requires(cxxabi="1.3.20"))
    old_host = parse_profile("glibcxx=3.4.40", "url")
    new_host = parse_profile("glibcxx=3.4.50", "url")
    assert not decide(file, report, old_host, abi_table=table).keep
    assert decide(file, report, new_host, abi_table=table).keep
    assert decide(file, report, old_host).keep  # the shipped table: 3.4.40 is past its end


def test_the_callers_build_label_stands_in_for_one_the_filename_lacks() -> None:
    """A family member's configured ``build`` labels files whose versions carry none."""
    report = Report(filename=WHEEL, sha256="0" * 64, requires=Requires(**SASS_AND_PTX_80))
    profile = parse_profile("cuda=12.4,sm=9.0", "url")
    plain = File(filename=WHEEL, url="u", hashes={})
    assert decide(plain, report, profile).keep  # majors alone
    assert [r.kind for r in decide(plain, report, profile, build="cu128").reasons] == ["cuda"]
    assert decide(plain, report, profile, build="cpu").keep
    labelled = File(filename=CU121, url="u", hashes={})
    assert decide(labelled, replace(report, filename=CU121), profile, build="cu128").keep


@pytest.mark.parametrize(
    ("filename", "libc"),
    [
        ("p-1.0-cp311-cp311-manylinux2014_x86_64.whl", "glibc-2.17"),
        ("p-1.0-cp311-cp311-manylinux_2_28_x86_64.manylinux2014_x86_64.whl", "glibc-2.17"),
        ("p-1.0-cp311-cp311-manylinux1_x86_64.whl", "glibc-2.5"),
        ("p-1.0-cp311-cp311-musllinux_1_2_aarch64.whl", "musl-1.2"),
        ("p-1.0-cp311-cp311-musllinux_1_1_x86_64.musllinux_1_2_x86_64.whl", "musl-1.1"),
        ("p-1.0-cp311-cp311-manylinux_2_17_x86_64.musllinux_1_2_x86_64.whl", None),
        ("p-1.0-cp311-cp311-linux_x86_64.whl", None),
        ("p-1.0-cp311-cp311-manylinux_2_17_x86_64.linux_x86_64.whl", None),
        ("p-1.0-py3-none-any.whl", None),
        ("p-1.0.tar.gz", None),
    ],
)
def test_the_libc_a_wheels_tags_admit(filename: str, libc: str | None) -> None:
    found = tagged_libc(filename)
    assert (str(found) if found is not None else None) == libc
