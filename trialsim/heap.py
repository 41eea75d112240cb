"""Keep a long streaming run's memory flat: glibc's allocator tuned for chunk-sized arrays.

glibc serves an allocation above its *mmap threshold* with its own ``mmap`` and returns it to
the system when freed, but it raises that threshold (up to 32 MiB) each time such a block is
freed. After the first chunks of a stream, the chunk's arrays (tens of MiB) therefore come
from the heap, whose freed space is kept and fragmented: peak memory crept up for about six
chunks (``simulate`` of the SFT scenario: 478 MiB after the first chunk, 682 MiB from the
sixth on). Fixing the threshold at 1 MiB keeps every large array (a column of a chunk) in its
own mapping, returned when freed, while small arrays are still reused from the heap; the peak
is then reached in the first chunk and stays (532 MiB, measured with ``scripts/bench
memory``). A fixed 128 KiB (glibc's initial value) is as flat but maps and zeroes many more
small arrays (slower); 8 MiB leaves a chunk's columns on the heap again (597 MiB).

Only commands that stream many equal chunks call this (``simulate``): the power path
allocates and frees its arrays at a higher rate and stays on glibc's defaults.
"""

from __future__ import annotations

import sys

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: arrays from this size on get their own mapping; setting it turns off glibc's dynamic growth
MMAP_THRESHOLD_BYTES = 1024 * 1024


def keep_heap_flat() -> bool:
    """Fix glibc's mmap and trim thresholds at 1 MiB for the rest of the process; True
    when applied (Linux with glibc), False elsewhere (other allocators need nothing)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return False
    return bool(ok)
