"""The ledger's aggregate repository: the library's, made safe and cheap for a process whose
commands decide on cached aggregates (``TRUSTED_CACHE``, `application.ledger`).

Named to the ledger by ``AGGREGATE_REPOSITORY_TOPIC`` in the environment the adapters build
(`adapters.persistence.DatabaseSettings.eventsourcing_env`); it implements the application's
`AggregateCache` port.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate

T = TypeVar("T")

# The topic the environment names this repository by.
REPOSITORY_TOPIC = "adapters.aggregate_cache:SerialisedRepository"


class SerialisedRepository(Repository[UUID]):
    """The library's repository, safe for concurrent gets of one cached aggregate, and
    cheaper per get.

    The library fast-forwards a cached aggregate in place under a per-aggregate lock, but
    deep-copies it for the caller outside that lock: a thread copying while another
    fast-forwards gets a torn aggregate (an event half applied) or "dictionary changed size
    during iteration". Gets of one aggregate are serialised here (striped locks), the
    caller's copy is made inside that lock, and a cached aggregate is never changed in
    place: fast-forwarding applies the new events to a copy, which replaces it in the cache.
    So an aggregate put in the cache (`remember`) may still be read by whoever put it there.

    The copy is a pickle round trip rather than ``copy.deepcopy``: the same independent
    object graph, about three times cheaper on a wallet with many lots (a command's largest
    cost in CPU once its saves are grouped). Aggregates of a type in ``immutable`` (never
    changed after their first event) are served from the cache as they are: no read of the
    store to fast-forward them and no copy.
    """

    STRIPES = 64
    MAX_BEHIND = 10_000

    def __init__(self, *args: Any, immutable: tuple[type[Any], ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stripes = tuple(threading.Lock() for _ in range(self.STRIPES))
        self._immutable = immutable
        # Cached aggregates another process has changed since (`forget`).
        self._behind: set[UUID] = set()

    def get(self, aggregate_id: UUID, **kwargs: Any) -> Any:
        if self.cache is None or kwargs.get("version") is not None:
            return super().get(aggregate_id, **kwargs)
        copy = kwargs.get("deepcopy_from_cache", True) and self.deepcopy_from_cache
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            try:
                cached = self.cache.get(aggregate_id)
            except KeyError:
                # Not cached: rebuilt from the store (snapshot and events) and cached.
                found = super().get(aggregate_id, **{**kwargs, "deepcopy_from_cache": False})
                return _copy(found) if copy else found
            if isinstance(cached, self._immutable):
                return cached
            found = cached
            self._behind.discard(aggregate_id)
            if self.fastforward:
                new = list(self.event_store.get(originator_id=aggregate_id, gt=cached.version))
                if new:
                    found = project_aggregate(_copy(cached), new)
                    if found is None:
                        raise AggregateNotFoundError(aggregate_id)
                    self.cache.put(aggregate_id, found)
            return _copy(found) if copy else found

    def cached(self, aggregate_id: UUID) -> Any | None:
        """A copy of the aggregate as the cache holds it, not fast-forwarded; None when it is
        not cached or is behind."""
        return self._find(aggregate_id, take=False)

    def check_out(self, aggregate_id: UUID) -> Any | None:
        """The cached aggregate itself, taken out of the cache (no copy): its taker may change
        it, and puts it back with `remember` once what it did is committed (or unchanged).
        Meanwhile a `get` of it reads the store, so nobody sees it half changed. None when
        it is not cached or is behind."""
        return self._find(aggregate_id, take=True)

    def take_out(self, aggregate_id: UUID) -> Any:
        """The aggregate for a command that will change it, as current as `get` makes it,
        and never a copy: its taker owns it until `remember` puts it back (as after
        `check_out`), and nobody else can read it meanwhile, since it is not in the cache. One
        not cached is rebuilt from the store; one cached but behind (another process wrote
        it, or the cache is not trusted) is taken out and its new events applied to it in
        place. Copying it instead, twice (to fast-forward, then for the taker), was a third of
        a join's CPU with two server processes (docs/performance.md).
        Raises ``AggregateNotFoundError``."""
        if self.cache is None:
            return self.get(aggregate_id)
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            try:
                cached = self.cache.get(aggregate_id)
            except KeyError:
                # A fresh process's first command on it: built for its taker alone.
                return self._reconstruct_aggregate(aggregate_id, None, _PROJECT)
            if isinstance(cached, self._immutable):
                return cached
            self.cache.get(aggregate_id, evict=True)
            self._behind.discard(aggregate_id)
        if not self.fastforward:
            return cached
        new = self.event_store.get(originator_id=aggregate_id, gt=cached.version)
        found = project_aggregate(cached, new)
        if found is None:
            raise AggregateNotFoundError(aggregate_id)
        return found

    def _find(self, aggregate_id: UUID, *, take: bool) -> Any | None:
        if self.cache is None:
            return None
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            if aggregate_id in self._behind:
                return None
            try:
                found = self.cache.get(aggregate_id)
            except KeyError:
                return None
            if isinstance(found, self._immutable):
                return found
            if take:
                self.cache.get(aggregate_id, evict=True)
                return found
            return _copy(found) if self.deepcopy_from_cache else found

    def remember(self, aggregate: Any) -> None:
        """Cache an aggregate as just committed, unless a later version is cached. The cache
        never changes it (see the class), so its saver may go on reading it."""
        if self.cache is None:
            return
        with self._stripes[hash(aggregate.id) % self.STRIPES]:
            try:
                found = self.cache.get(aggregate.id)
            except KeyError:
                found = None
            if found is None or found.version < aggregate.version:
                self.cache.put(aggregate.id, aggregate)

    def forget(self, aggregate_id: UUID, older_than: int | None = None) -> None:
        """Mark a cached aggregate another process has changed as behind: `cached` no longer
        serves it, and the next `get` reads only its new events. With ``older_than``, only
        if the cached version is older."""
        if self.cache is None:
            return
        with self._stripes[hash(aggregate_id) % self.STRIPES], contextlib.suppress(KeyError):
            if older_than is None or self.cache.get(aggregate_id).version < older_than:
                if len(self._behind) < self.MAX_BEHIND:
                    self._behind.add(aggregate_id)
                else:  # then dropped instead: read whole next time
                    self.cache.get(aggregate_id, evict=True)


# The library's projector, typed as the repository's (generic over no aggregate type) accepts.
_PROJECT: Any = project_aggregate


def _copy(aggregate: T) -> T:
    copied: T = pickle.loads(pickle.dumps(aggregate, pickle.HIGHEST_PROTOCOL))
    return copied
