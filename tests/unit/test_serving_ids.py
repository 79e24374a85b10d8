"""Request ids (mlopsctl/serving/app.py `_request_id`): a client's printable X-Request-ID is
kept; otherwise a fresh random one, never the same twice, across threads and in a forked
worker (whose block of ids must not repeat its parent's)."""

from __future__ import annotations

import os
import threading

from mlopsctl.serving.app import _request_id


def test_a_valid_client_id_is_kept_and_a_bad_one_replaced() -> None:
    assert _request_id({b"x-request-id": b"order-17"}) == "order-17"
    for bad in (b"a\x01b", "é".encode(), b"x" * 10_000, b""):
        fresh = _request_id({b"x-request-id": bad})
        assert len(fresh) == 24 and int(fresh, 16) >= 0


def test_fresh_ids_are_unique_across_threads() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        for _ in range(3000):
            out.append(_request_id({}))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for out in drawn for i in out]
    assert len(set(ids)) == len(ids) == 12_000
    assert all(len(i) == 24 for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    _request_id({})  # the parent holds the rest of a block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, " ".join(_request_id({}) for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {_request_id({}) for _ in range(300)}
    assert len(child) == 300 and len(parent) == 300
    assert not child & parent
