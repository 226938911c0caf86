"""The Gofer: a 9P2000.L file server process and the Sentry's client for it.

`p9` is the sans-I/O codec, `server` the Gofer process logic (run it with
``python -m pyvisor.gofer --fd N --root DIR``), `client` the Sentry side,
and `process` the Sentry's handle on the Gofer process (start, watch, stop).
Nothing here imports the Sentry or a platform (tests/test_layers.py).
This package file stays empty of imports so that starting the Gofer process
loads only what it needs.
"""
