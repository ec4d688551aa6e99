"""localpar's benchmark suite: ``python -m benchmarks`` (from the repo root).

Measures, in one run and with the same number of workers, localpar against
multiprocessing.Pool (fork), concurrent.futures.ProcessPoolExecutor, loky,
ipyparallel and dask.distributed, next to the raw limits of the machine (a bare
Pipe, memcpy), then writes docs/benchmarks.md and docs/benchmarks.png.

Never part of the unit tests: it takes minutes and wants a quiet machine.

Modules, one aspect each:
    tasks        the functions the workers run (importable, so pickled by reference)
    stats        timing helpers: percentiles, medians, a clock shared by processes
    limits       raw Pipe ping-pong and one-way latency, memcpy bandwidth
    peers        one small adapter per tool: start/noop/submit_many/map/array/close
    publication  publish_data latency and big published payloads
    memory       idle worker USS, client memory under a million publications
    scaling      engines 1..8 and payload 1 KB..64 MB sweeps
    report       the targets, the markdown;  plot: the PNG
"""
