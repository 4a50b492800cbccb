"""The modules of the ``dokobit-async`` command; :mod:`dokobit_async.cli` is its face.

Private: nothing outside the command imports from here.

* ``arguments``: argument types shared by the commands.
* ``output``: printed lines, the one-line error, the progress bar, downloads' files.
* ``logs``: log records as single masked lines on stderr.
* ``signals``: serving commands stop on SIGINT or SIGTERM.
* ``api``: ``status``, ``download``, ``validate``, ``sign`` and ``emulate``.
* ``listen``: serve a postback receiver.
* ``inbox``: inspect and repair a listener's inbox.
* ``demo``: one whole signing with its postbacks.
"""
