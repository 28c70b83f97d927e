"""Side-by-side timing on a shared, noisy machine (used by the benchmark and by tune)."""
import time


def interleaved(fns, budget_s=0.3, min_runs=3, max_runs=50, slow_s=None, after_each=None):
    """Time several callables round-robin (A B C A B C ...) so that a slow phase of the machine
    hits them alike. Each is called once first (untimed). The number of rounds fits budget_s for
    the slowest: at least min_runs, only 2 when one call takes longer than budget_s.
    Returns one list of seconds per callable; after_each(i) runs after each timed call of fns[i]."""
    first = []
    for fn in fns:
        t0 = time.perf_counter()
        fn()
        first.append(time.perf_counter() - t0)
    slowest = max(first) if slow_s is None else slow_s
    runs = 2 if slowest > budget_s else int(min(max_runs, max(min_runs, budget_s / max(slowest, 1e-9))))
    times = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
            if after_each is not None:
                after_each(i)
    return times


def settle(seconds=0.25):
    """Let the worker threads of BLAS / OpenMP (which spin after a call) park before timing
    something that needs the cores."""
    time.sleep(seconds)
