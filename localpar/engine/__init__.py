"""The engine side: everything here runs in an engine process, never in the client.

`loop` is the engine's task loop and its control thread; `namespace` holds the operations the views
send (push, pull, execute); `output` captures a task's stdout and stderr; `publishing` and `datapub`
are ``publish_data``'s engine side.  Nothing here imports the client side.
"""
