"""Keep decoded images in the C heap instead of round-tripping them through the kernel.

glibc serves every allocation above its mmap threshold with a fresh mmap and hands it back with
munmap when freed; a decoded 1-MP image (3 MB, plus Pillow's and numpy's copies) then faults all
of its pages in again for every file. On the 2-core development machine that was ~6 ms of a
~10 ms JPEG decode, and the network's activation buffers churn the same way. Raising the mmap
and trim thresholds lets freed buffers be reused.
Process-wide, so the engine applies it once when it starts; Linux with glibc only.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
# Buffers up to 64 MiB (a ~21-MP RGB image; the network's largest activations at batch 16) stay
# in the heap, and up to 256 MiB of free heap is kept before any is returned. Measured on the
# 2-core development machine, model-only crops/s at batch 16: glibc defaults ~85, 32/32 MiB ~85,
# 32/256 MiB ~135, 64/256 MiB ~155. The price is resident memory that settles ~300 MB higher
# (docs/RESULTS.md, 10,000-file run) instead of being handed back between images.
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20


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
