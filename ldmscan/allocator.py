"""Keep decoded images in the C heap instead of round-tripping them through the kernel.

glibc serves every allocation above its mmap threshold with a fresh mmap and hands it back with
munmap when freed; a decoded 1-MP image (3 MB, plus Pillow's and numpy's copies) then faults all
of its pages in again for every file. On the 2-core development machine that was ~6 ms of a
~10 ms JPEG decode. Raising the mmap and trim thresholds lets freed image buffers be reused.
Process-wide, so the engine applies it once when it starts; Linux with glibc only.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # buffers up to 64 MiB (~21 MP RGB) stay in the heap
TRIM_THRESHOLD = 256 << 20  # free heap kept for reuse before any is returned to the kernel


@functools.cache
def keep_image_buffers_in_heap() -> bool:
    """Apply the thresholds; True where they took effect (Linux/glibc), False elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
