"""The emulator of the Universal API, one module per concern.

Its public names are exported by :mod:`dokobit_async.testing`; the modules here are
private. From the bottom up:

* ``config``: behaviour switches and fault injection (:class:`EmulatorConfig`).
* ``errors``: the error envelope and the exceptions that produce it.
* ``records``: what the emulator records for tests (requests, postbacks, outbox).
* ``documents``: PDFs, signature containers and validation reports it hands out.
* ``forms``: request bodies (form, JSON, multipart) into one nested tree.
* ``validate``: parsed bodies into typed specs, one error per invalid field.
* ``state``: the in-memory state and the signing state machine (no I/O).
* ``postbacks``: postback delivery with the documented retry schedule.
* ``guard``: the middleware in front of API routes (record, rate limit, faults, auth).
* ``core``: the state, outbox and postbacks behind one object, and the shared actions.
* ``handlers``: small helpers of the route handlers (bodies, JSON and file answers).
* ``routes``, ``services``, ``pages``: the signing API, e-seal/e-delivery/validation,
  and the browser pages.
* ``emulator``: :class:`Emulator`, the server that ties them together.

Like the wire notes it emulates, it imports nothing from the client or the receiver:
it is a second, independent reading of the API.
"""
