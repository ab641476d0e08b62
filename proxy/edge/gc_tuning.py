"""The cyclic garbage collector, tuned for a server that builds big pages.

A cold page of 11,000 files allocates about 100,000 containers (dicts, `File`s, tuples)
that live until the page is rendered and cached. With CPython's default thresholds
(700, 10, 10) that is ~140 young collections per page, each walking the survivors of
the ones before, plus full collections walking every page, report and rendering the
process holds: ~100 ms of a ~700 ms cold page (measured with gc.callbacks), for no
garbage (the page's objects are not cyclic, reference counting frees them).

So, once the server has started (its imports, rules, tables and stores are made and
will live as long as the process): collect once, freeze what is left (`gc.freeze`: the
collector never walks it again), and collect the young generation every
`YOUNG_THRESHOLD` allocations instead of 700. Cyclic garbage still goes, a little later.
When the last app of the process stops, the collector is restored as it was, so a process
that starts several apps (tests, one after another or at once) ends as it began.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# Measured on the grpcio-size cold page (bench/coldpage_profile.py): the young
# generation's threshold decides; the older ones only need to stay rare.
YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 20)


_lock = threading.Lock()
_users = 0
_before = gc.get_threshold()


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    global _users, _before
    with _lock:
        if _users == 0:
            _before = gc.get_threshold()
        _users += 1
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                gc.set_threshold(*_before)
                gc.unfreeze()
