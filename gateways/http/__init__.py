"""The HTTP API (``livecomments api``): REST beside the WebSocket gateway.

``pages`` and ``errors`` are pure (cursor pages, cache headers, error bodies); ``app``
is the FastAPI application and its connections to the servers; ``server`` runs it on
uvicorn. Reference: ``docs/api.md``.
"""
