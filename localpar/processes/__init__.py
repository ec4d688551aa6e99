"""Starting, watching and ending processes: the layer under the client and the engines.

`launch` picks the start method; `lifeline` makes every child exit when the client is gone and
reads a dead child's exit status; `proctree` finds and ends what tasks started; `limits` checks
descriptors and process limits before anything starts; `spin` decides when a waiter may busy-wait.
The client uses them to start and end engines; each engine uses them to watch its parent.
"""
