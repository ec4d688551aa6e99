"""IPython's "Data Publication API" notebook as a script, with localpar.

Engines publish data back to the client while their task runs: inside the task,
``publish_data(dict)``; on the client, ``ar.data`` is the latest dict from each engine.

    python examples/data_publication.py                 # all CPUs, 10 steps of 1 s
    python examples/data_publication.py --engines 2 --steps 5 --interval 0.2 --no-plot
"""

from __future__ import annotations

import argparse
import os
import time


def publish_it():
    """Publish one small dict (runs on each engine)."""
    from localpar.datapub import publish_data

    publish_data(dict(a="hi"))


def simulation_loop(steps, interval):
    """A mock simulation: publish an array and the loop variable at each time step."""
    import time

    import numpy as np

    from localpar.datapub import publish_data

    for i in range(steps):
        publish_data(dict(a=np.random.rand(20), i=i))
        time.sleep(interval)


def show(t, data):
    """One line: seconds since submission, then each engine's step and the mean of its array."""
    cells = []
    for d in data:
        cells.append(f"i={d['i']:<3} mean(a)={d['a'].mean():.3f}" if "i" in d else "-")
    print((f"{t:7.2f}  " + "   ".join(f"{c:<20}" for c in cells)).rstrip(), flush=True)


def plot(data, path):
    """The notebook's plot: each engine's array, with the time step as title."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # a script: write a file, open no window
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    for i, d in enumerate(data):
        plt.plot(d["a"], label="engine: " + str(i))
    plt.title("Data published at time step: " + str(data[0]["i"]))
    plt.legend()
    plt.savefig(path)
    print("plot saved to", os.path.abspath(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=None, help="engine processes (default: one per CPU)")
    parser.add_argument("--steps", type=int, default=10, help="time steps of the simulation (default: 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds per time step (default: 1)")
    parser.add_argument("--no-plot", action="store_true", help="do not save data_publication.png (in the current directory)")
    args = parser.parse_args()

    from localpar import Client

    with Client(args.engines) as c:  # closes the engines at the end, even on Ctrl-C
        dv = c[:]
        dv.block = False
        print(dv)

        # Simple publication: each engine publishes dict(a='hi').
        ar = dv.apply_async(publish_it)
        ar.get(timeout=30)
        print("ar.data =", ar.data)

        # Simulation loop: new data every `interval` seconds; read ar.data every half interval.
        ar = dv.apply_async(simulation_loop, args.steps, args.interval)
        print(("    t/s  " + "   ".join(f"{'engine ' + str(e):<20}" for e in c.ids)).rstrip())
        poll = max(args.interval / 2, 0.05)
        start = time.monotonic()
        while not ar.ready():
            time.sleep(poll)
            show(time.monotonic() - start, ar.data)
        ar.get()  # raises if a task failed

        data = ar.data  # one dict per engine (a single int target, c[0], gives one dict)
        assert isinstance(data, list)
        print("final time step per engine:", [d["i"] for d in data])
        if not args.no_plot:
            plot(data, "data_publication.png")


if __name__ == "__main__":
    main()
