"""The client side: everything here runs in the user's process (a script, a pytest run, a notebook kernel).

`Client` starts the engines and owns them; views decide where calls go; `AsyncResult` is the handle
on a submitted call.  Behind them, one collector thread reads every engine's events and the
publication queue, and the ledger holds the engines and pending tasks under one lock.  The
threads and what each owns: ``docs/architecture.md``.  Nothing here is imported by an engine.
"""
