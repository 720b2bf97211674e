"""One background thread for write work, so compression and checksums overlap the next forward pass.

Work runs in submission order (a shard's files are published before its progress record, and
shard k before shard k+1). The queue is bounded, so at most `max_pending` units of work (one batch's rows each) wait in memory.
An error in the thread is re-raised in the caller at the next submit or wait.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Self

_STOP = object()


class BackgroundWriter:
    def __init__(self, max_pending: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="cortexlens-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            fn, args = item
            try:
                if self._error is None:  # after a failure, drop the rest: the run is over
                    fn(*args)
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                self._error = err
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._queue.put((fn, args))

    def wait(self) -> None:
        """Block until all submitted work ran; re-raise its first error."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._queue.join()
        finally:
            self.close()
