"""Keep the network's large buffers in the C heap instead of round-tripping them through the
kernel.

glibc serves every allocation above its mmap threshold with a fresh mmap and hands it back with
munmap when freed. The threshold adapts upwards, but only to 32 MiB, and EfficientNet-Lite0's
widest activations at a 16-crop batch of 192 px are ~56 MB: every model call maps them again and
faults in every page. Raising the mmap and trim thresholds lets freed buffers be reused.

The thresholds only hold in glibc's main arena. A thread other than the main one (the engine's
model thread) allocates from an arena of its own, built of 64 MiB sub-heaps that are unmapped as
soon as they empty, so ~56 MB buffers there can be mapped and faulted afresh on each call
whatever the thresholds say: in some processes the network ran ~25% slower in the model thread,
with half a core in the kernel, and 32-crop batches were slower. One arena puts
every thread's buffers in the main heap. Its cost is one malloc lock for all threads, which the
few large allocations per image do not feel.

`benchmarks/bench_cpu_settings.py` measures each setting; numbers in docs/RESULTS.md.
Process-wide, so the engine and training apply it once when they start, before their threads
exist (a thread keeps the arena it first allocated from); Linux with glibc only.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Buffers up to 64 MiB stay in the heap, and up to 256 MiB of free heap is kept before any is
# returned. 32/32 MiB gains nothing; the price of 64/256 is resident memory that settles a few
# hundred MB higher instead of being handed back between batches (docs/RESULTS.md).
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_large_buffers_in_heap() -> bool:
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
        and libc.mallopt(M_ARENA_MAX, 1)
    )
