"""Synthetic CUDA builds of one project, as a CUDA index family publishes them.

Each build is a real wheel holding an extension module whose ``answer()`` names the
build (so an import shows which one was installed), and, for a CUDA build, a library
compiled with gcc that needs ``libcudart.so.N`` (a stub runtime with that SONAME and
its versioned symbols, like the real one) and carries a ``.nv_fatbin`` section laid
out as nvcc embeds it (see tests/fixtures/elf/fatbin.c), with the SASS and PTX
architectures asked for. The library is not loaded on import: hosts without a GPU
can install and import every build.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.wheels import compile_shared_object, escape_name, extension_wheel


@dataclass(frozen=True)
class CudaBuild:
    label: str  # "cu126", "cpu"
    cuda_major: int | None = None  # the libcudart.so.N the library needs
    sass: tuple[int, ...] = ()  # 61 for sm_61
    ptx: tuple[int, ...] = ()  # 90 for compute_90


def fatbin_source(sass: Sequence[int], ptx: Sequence[int]) -> str:
    """C source of a one-container ``.nv_fatbin`` section: cubins for ``sass``, PTX for ``ptx``."""
    entries = [(2, arch) for arch in sass] + [(1, arch) for arch in ptx]
    fields = "\n".join(
        f"    struct fatbin_entry e{i};\n    uint8_t p{i}[8];" for i in range(len(entries))
    )
    values = "\n".join(
        f"        {{{kind}, 0x0101, 64, 8, 8, 0, 7, 1, {arch}, {{0}}}}, {{{i + 1}}},"
        for i, (kind, arch) in enumerate(entries)
    )
    return f"""\
#include <stdint.h>
struct fatbin_header {{ uint32_t magic; uint16_t version; uint16_t header_size; uint64_t size; }};
struct fatbin_entry {{
    uint16_t kind; uint16_t version; uint32_t header_size; uint64_t padded_size;
    uint32_t size; uint32_t reserved0; uint16_t code_minor; uint16_t code_major;
    uint32_t arch; uint8_t reserved[32];
}};
struct container {{
    struct fatbin_header header;
{fields}
}};
__attribute__((section(".nv_fatbin"), used, aligned(8)))
static const struct container fatbin = {{
    {{0xBA55ED50u, 1, 16, sizeof(struct container) - 16}},
{values}
}};
const void *fatbin_address(void) {{ return &fatbin; }}
"""


def cudart_stub(major: int, out_dir: Path) -> Path:
    """``libcudart.so.<major>``: that SONAME, its symbols versioned as the real one's."""
    soname = f"libcudart.so.{major}"
    out_dir.mkdir(parents=True, exist_ok=True)
    script = out_dir / f"{soname}.map"
    script.write_text(f"{soname} {{\n    global: cudaGetDeviceCount;\n    local: *;\n}};\n")
    return compile_shared_object(
        "int cudaGetDeviceCount(int *count) { *count = 0; return 0; }\n",
        out_dir / soname,
        flags=[f"-Wl,-soname,{soname}", f"-Wl,--version-script={script}"],
    )


def kernels_library(build: CudaBuild, out: Path) -> Path:
    """A library that needs the build's CUDA runtime and carries its GPU code."""
    assert build.cuda_major is not None
    runtime = cudart_stub(build.cuda_major, out.parent / f"cudart{build.cuda_major}")
    source = fatbin_source(build.sass, build.ptx) + (
        "extern int cudaGetDeviceCount(int *count);\n"
        "int kernels_devices(void) { int n = 0; cudaGetDeviceCount(&n); return n; }\n"
    )
    return compile_shared_object(
        source, out, flags=["-L", str(runtime.parent)], libs=[f":{runtime.name}"]
    )


def build_wheel_for(
    name: str, version: str, build: CudaBuild, out_dir: Path, *, tag: str, local: bool = True
) -> Path:
    """``name-version+label``'s wheel (``local=False``: no local version, as an index that
    holds one build may publish it), whose ``answer()`` returns the label."""
    files: dict[str, bytes] = {}
    if build.cuda_major is not None:
        with tempfile.TemporaryDirectory() as tmp:
            library = kernels_library(build, Path(tmp) / "libkernels.so")
            files[f"{escape_name(name).lower()}_kernels/libkernels.so"] = library.read_bytes()
    full = f"{version}+{build.label}" if local else version
    target = out_dir / build.label
    return extension_wheel(name, full, target, value=build.label, tag=tag, files=files)
