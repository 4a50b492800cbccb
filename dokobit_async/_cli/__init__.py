"""The modules of the ``dokobit-async`` command; :mod:`dokobit_async.cli` is its face.

Private: nothing outside the command imports from here.

* ``access``: the access token (environment, ``--token-file``, warned ``--token``)
  and the client made with it.
* ``arguments``: argument types shared by the commands.
* ``fields``: a call's arguments from options and ``--from-json``; uploads.
* ``output``: printed lines, the one-line error, the progress bar, downloads' files.
* ``logs``: log records as single masked lines on stderr.
* ``signals``: serving commands stop on SIGINT or SIGTERM.
* ``api``: ``status``, ``download``, ``validate`` and ``emulate``.
* ``signings``: ``signing create|status|download|add-signers|remove-signers|update|
  delete|remind|seal`` (``sign`` is ``signing create``).
* ``services``: ``delivery create``, ``validation upload|report``.
* ``listen``: serve a postback receiver.
* ``inbox``: inspect and repair a listener's inbox.
* ``demo``: one whole signing with its postbacks.
"""
