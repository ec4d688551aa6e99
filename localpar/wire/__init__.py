"""What crosses between the client and its engines; imported by both sides.

The message types (`messages`), how they are framed on a pipe (`framing`), how objects are
pickled (`serialization`) with big buffers in shared memory (`sharedmem`), the one publication pipe
all engines write (`pubqueue`), and the small values both sides know (`reference`, `execreply`,
`spec`).  Nothing here knows which side it runs on.
"""
