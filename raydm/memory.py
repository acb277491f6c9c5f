"""How this process's C allocator keeps the memory it frees."""

from __future__ import annotations

import ctypes

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Let this process reuse the memory it frees instead of returning it to the system.

    glibc unmaps freed blocks above a threshold and trims the heap's free top, so the megabytes
    of activations every training step allocates are page-faulted in afresh each time; keeping
    them took about a fifth off a LeNet DANN step here (BENCHMARKS.md). Other C libraries are
    left as they are.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's ceiling; larger blocks are still mapped
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
