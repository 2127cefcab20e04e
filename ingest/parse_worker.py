"""Parse files in a worker process under a time limit, so one hostile file cannot hold the knowledge
base lock: each file has one deadline, `parse_timeout_s` (pages do not restart it). Paginated loaders stop
there and keep the pages read (reporting the rest as skipped); a parse still running `hard_limit_s` after it
starts (a quarter more, at least 10 s: the page in hand may finish) is killed, the file reported and skipped,
and a fresh worker takes the next file.

One long-lived worker per ingesting process (spawned, not forked: the parent holds model threads),
reused across files and stopped when idle; a lock serialises callers.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from core.errors import FileRejected
from core.settings import Settings
from ingest.loaders import LoadedDocument, ParseOptions, load_file

_IDLE_EXIT_S = 120.0  # a worker nobody asked for this long exits; the next file starts another
_START_TIMEOUT_S = 300.0


def hard_limit_s(timeout_s: float) -> float:
    """When a parse is killed: past the deadline the loaders keep themselves, by a quarter (at least 10 s)."""
    return timeout_s + max(10.0, timeout_s / 4)


def options_from(settings: Settings) -> ParseOptions:
    return ParseOptions(
        max_unzipped_bytes=settings.max_unzipped_mb * 2**20,
        max_paragraphs=settings.max_paragraphs,
        max_text_chars=settings.max_text_chars,
        max_pages=settings.max_pages,
        max_cells=settings.max_cells,
        ocr=settings.ocr,
        ocr_max_pixels=settings.ocr_max_pixels,
        deadline_s=settings.parse_timeout_s or None,
    )


def _serve(conn: Connection) -> None:
    """The worker: parse each requested file, stream page ticks, answer with the document or a reason."""
    conn.send(("ready", None))  # the parsers are imported: what follows is the files' time
    while conn.poll(_IDLE_EXIT_S):
        try:
            path, options = conn.recv()
        except EOFError:
            return
        try:
            doc = load_file(path, on_page=lambda: conn.send(("page", None)), options=options)
            conn.send(("ok", doc))
        except FileRejected as exc:
            conn.send(("rejected", exc.reason))
        except BaseException as exc:  # noqa: BLE001 - anything else is reported for this file only
            conn.send(("rejected", f"the parser failed ({type(exc).__name__}: {exc})"))


class ParseWorker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            return self._conn
        self.stop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="ingest-parser")
        self._proc.start()
        child.close()
        self._conn = parent
        # starting Python and importing the parsers is not the file's time: wait for the worker first
        if not parent.poll(_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"the parse worker did not start within {_START_TIMEOUT_S:g} s")
        parent.recv()
        return parent

    @property
    def pid(self) -> int | None:
        """The worker process's id while one runs (to measure what a file costs it)."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def load(
        self, path: Path, options: ParseOptions, timeout_s: float, on_page: Callable[[], None] | None = None
    ) -> LoadedDocument:
        with self._lock:
            try:
                conn = self._start()
                try:
                    conn.send((path, options))
                except (BrokenPipeError, OSError):  # it exited while idle: start another
                    self.stop()
                    conn = self._start()
                    conn.send((path, options))
            except (RuntimeError, EOFError, OSError) as exc:
                self.stop()
                raise FileRejected(path, f"could not start the parser process ({exc}); try again") from exc
            started = time.monotonic()
            deadline = started + hard_limit_s(timeout_s)  # one per file: progress does not extend it
            pages = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise FileRejected(
                        path,
                        f"parsing took over {time.monotonic() - started:.0f} s ({pages:,} page(s) done) and was "
                        f"stopped (limit ASSISTANT_PARSE_TIMEOUT_S = {timeout_s:g} s per file); the file may be "
                        "malformed or hostile: re-save or split it",
                    )
                if not conn.poll(min(left, 1.0)):
                    if self._proc is None or not self._proc.is_alive():
                        self.stop()
                        raise FileRejected(path, "the parser process died (out of memory?); re-save or split it")
                    continue
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    self.stop()
                    raise FileRejected(path, "the parser process died (out of memory?); re-save or split it") from None
                if kind == "page":
                    pages += 1
                    if on_page is not None:
                        on_page()
                elif kind == "ok":
                    return value
                else:
                    raise FileRejected(path, value)


_WORKER = ParseWorker()


def parse_file(settings: Settings, path: Path, on_page: Callable[[], None] | None = None) -> LoadedDocument:
    """`load_file` with the settings' limits, in the worker process unless `parse_timeout_s` is 0."""
    options = options_from(settings)
    if settings.parse_timeout_s <= 0:
        return load_file(path, on_page=on_page, options=options)
    return _WORKER.load(path, options, settings.parse_timeout_s, on_page)
