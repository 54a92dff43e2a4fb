"""The serving engine: every generation request of the server decoded together, by one
thread, over one :class:`~minillm.train.generation.DecodeBatch` (chapter section 3.6,
"response time and throughput").

Requests come from any thread (FastAPI's thread pool) or event loop (a streamed answer):
:meth:`Engine.submit` queues one and returns its :class:`Ticket`. The engine's thread,
started at the first request, loops:

1. takes the queued requests into the batch (up to ``max_rows`` rows; the others wait),
   and drops the rows whose ticket was cancelled (a client that went away);
2. runs one :meth:`DecodeBatch.step` (one batched forward call for every row, under the
   served run's lock), hands each row's token to its ticket;
3. lets the finished rows leave (their end token or their token budget) and ends their
   tickets.

New rows join between two steps and are prefilled at the next one; so a request never
waits for another to finish, and each row's tokens are those it gets alone (a row has its
own seed and sampling options: :class:`~minillm.train.generation.DecodeBatch`). Nothing
here runs a model on an event loop's thread.

A ticket hands its events to a ``deliver(event)`` callable, called on the engine's
thread: ``("token", id)`` for each new token, then one ``("end", None)``, or
``("error", exception)`` where the request could not be decoded (its row was refused,
or a forward call failed). :meth:`Engine.generate` waits for all of them (a blocking
call, for the thread pool); :meth:`Engine.stream` yields the tokens in an event loop
(``loop.call_soon_threadsafe`` puts them on an ``asyncio.Queue``; those that came while the
consumer was busy come together), and cancels the request when the consumer stops early.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable

from ..train.generation import DecodeBatch

__all__ = ["Engine", "Ticket"]

logger = logging.getLogger("minillm")


@dataclass(eq=False)
class Ticket:
    """One queued or running request: what to decode, where its events go."""
    prompt_ids: list[int]
    max_new_tokens: int
    options: dict                                   # temperature, top_k, top_p, seed, eos_id
    deliver: Callable[[tuple], None]
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop decoding this request (its row leaves the batch before the next step); safe
        from any thread, and after the request ended."""
        self.cancelled.set()


class Engine:
    """One decoding thread for a served run (:class:`~minillm.serving.model.ServedRun`:
    ``runtime``, ``model`` in eval mode, ``lock`` held around each step).

    ``max_rows``: the most requests decoded together; more wait in the queue, in order.
    """

    def __init__(self, served, max_rows: int = 32):
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        self.served, self.max_rows = served, max_rows
        self._queue: list[Ticket] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.running = 0                                # requests in the batch now
        self.steps = 0                                  # batched steps run (for tests and benchmarks)
        self.widest = 0                                 # the most rows one step has decoded

    @property
    def in_flight(self) -> int:
        """Requests queued or in the batch (0: the engine is idle)."""
        with self._wake:
            return len(self._queue) + self.running

    # -- submitting --------------------------------------------------------------------------
    def submit(self, prompt_ids, max_new_tokens: int, deliver: Callable[[tuple], None], *,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = 0, eos_id: int | None = None) -> Ticket:
        """Queues a request (options as :func:`~minillm.train.generation.generate`'s);
        returns its ticket. Its events go to ``deliver`` (see the module)."""
        ticket = Ticket(list(prompt_ids), max_new_tokens, dict(temperature=temperature, top_k=top_k,
                                                               top_p=top_p, seed=seed, eos_id=eos_id), deliver)
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="minillm-engine", daemon=True)
                self._thread.start()
            self._queue.append(ticket)
            self._wake.notify()
        return ticket

    def generate(self, prompt_ids, max_new_tokens: int, **options) -> list[int]:
        """The new ids of one request, waiting for its end (from any thread but the engine's)."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        ticket = self.submit(prompt_ids, max_new_tokens, events.put, **options)
        new = []
        try:
            while True:
                kind, value = events.get()
                if kind == "token":
                    new.append(value)
                elif kind == "end":
                    return new
                else:
                    raise value
        finally:
            ticket.cancel()

    async def stream(self, prompt_ids, max_new_tokens: int, **options):
        """Yields one request's new ids as they are chosen, in the running event loop: each
        yield is a list of the ids that came since the last one (one, or several where the
        consumer fell behind the engine: a busy server sends fewer, larger pieces). Closing
        the generator early (a client that went away) cancels the request."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def deliver(event):
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:            # the loop is closed: nobody is listening any more
                ticket.cancel()

        ticket = self.submit(prompt_ids, max_new_tokens, deliver, **options)
        try:
            while True:
                came = [await events.get()]
                while not events.empty():
                    came.append(events.get_nowait())
                tokens = [value for kind, value in came if kind == "token"]
                if tokens:
                    yield tokens
                kind, value = came[-1]          # an end or an error is the request's last event
                if kind == "end":
                    return
                if kind == "error":
                    raise value
        finally:
            ticket.cancel()

    def close(self, timeout: float = 10.0) -> None:
        """Stops the thread after its current step; queued and running requests end with an error."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the engine's thread ---------------------------------------------------------------
    def _run(self) -> None:
        decoder = DecodeBatch(self.served.runtime, self.served.model)
        running: dict[int, Ticket] = {}                 # DecodeBatch row key -> its ticket
        while True:
            with self._wake:
                while not self._closed and not running and not self._queue:
                    self._wake.wait()
                if self._closed:
                    break
                joining = self._queue[:max(0, self.max_rows - len(running))]
                del self._queue[:len(joining)]
                self.running = len(running) + len(joining)
            for ticket in joining:
                if ticket.cancelled.is_set():
                    continue
                try:
                    running[decoder.add(ticket.prompt_ids, ticket.max_new_tokens, **ticket.options)] = ticket
                except ValueError as exc:               # a row DecodeBatch refuses: this request only
                    ticket.deliver(("error", exc))
            for key in [k for k, t in running.items() if t.cancelled.is_set()]:
                decoder.remove(key)
                del running[key]
            self.running = len(running)
            if decoder.active:
                try:
                    with self.served.lock:
                        tokens = decoder.step()
                except Exception as exc:                # a bug: every row in the step fails, not the server
                    logger.exception("the serving engine's decoding step failed")
                    for ticket in running.values():
                        ticket.deliver(("error", exc))
                    decoder, running = DecodeBatch(self.served.runtime, self.served.model), {}
                    self.running = 0
                    continue
                self.steps += 1
                self.widest = max(self.widest, len(tokens))
                for key, token in tokens.items():
                    running[key].deliver(("token", token))
            for key in [k for k in running if decoder.rows[k].done]:
                decoder.remove(key)
                running.pop(key).deliver(("end", None))
            self.running = len(running)
        closed = RuntimeError("the server is shutting down")
        for ticket in list(running.values()) + self._queue:
            ticket.deliver(("error", closed))
