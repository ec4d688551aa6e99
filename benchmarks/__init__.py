"""localpar's benchmark suite: ``python -m benchmarks`` (from the repo root).

Measures, in one run and with the same number of workers, localpar against
multiprocessing.Pool (fork), concurrent.futures.ProcessPoolExecutor, loky,
ipyparallel and dask.distributed, next to the raw limits of the machine (a bare
Pipe, memcpy), then writes docs/benchmarks.md and docs/benchmarks.png.

Never part of the unit tests: it takes minutes and wants a quiet machine.

Modules, one aspect each:
    tasks        the functions the workers run (importable, so pickled by reference)
    notebook     the same no-op as a function, lambda and closure defined in __main__ (pickled by value)
    stats        timing helpers: percentiles, medians, a clock shared by processes
    limits       raw Pipe ping-pong and one-way latency, memcpy bandwidth
    peers        one small adapter per tool: start/call/noop/submit_many/map/array/close
    measure      every figure for one tool, through its adapter
    shared       round trip and submit-all while a helper process burns one core
    memory       idle worker USS, client memory under a million publications
    scaling      engines 1..8 and payload 1 KB..64 MB sweeps
    targets      the goals of issues 6 and 13 in one table, read from a run's results
    report       the markdown;  plot: the PNG;  repeat: --repeat N, targets met over N runs
"""
