"""The one cache class: a thread-safe LRU keyed by value. Every in-memory cache of vkconvt that maps
a problem to what was computed for it (plans, calls, device recordings) is one of these, with one
rule: the key holds every value the entry depends on (the problem, the request, the settings
snapshot, the device profile), so nothing is ever invalidated by hand; an entry nobody asks for
again ages out. `clear_all()` empties them (tests, and a device that was cleared)."""
import collections
import threading

_all = []


class LRU:
    def __init__(self, name, maxsize, on_evict=None):
        self.name = name
        self.maxsize = maxsize
        self.on_evict = on_evict          # called with each entry pushed out (e.g. to free device objects)
        self._data = collections.OrderedDict()
        self._lock = threading.Lock()
        _all.append(self)

    def get(self, key, default=None):
        try:
            with self._lock:
                value = self._data[key]
                self._data.move_to_end(key)
                return value
        except (KeyError, TypeError):         # TypeError: an unhashable key is never cached
            return default

    def put(self, key, value):
        evicted = []
        try:
            with self._lock:
                self._data[key] = value
                self._data.move_to_end(key)
                while len(self._data) > self.maxsize:
                    evicted.append(self._data.popitem(last=False)[1])
        except TypeError:
            return value
        if self.on_evict:
            for v in evicted:
                self.on_evict(v)
        return value

    def pop(self, key, default=None):
        with self._lock:
            return self._data.pop(key, default)

    def values(self):
        with self._lock:
            return list(self._data.values())

    def items(self):
        with self._lock:
            return list(self._data.items())

    def clear(self):
        with self._lock:
            values = list(self._data.values())
            self._data.clear()
        if self.on_evict:
            for v in values:
                self.on_evict(v)

    def __len__(self):
        return len(self._data)


def clear_all():
    for c in list(_all):
        c.clear()
