"""``livecomments api``: the HTTP API on uvicorn (uvloop), one process.

Shutdown is uvicorn's: on SIGTERM it stops accepting, lets requests in flight finish
(a post in flight is either acked by Kafka or not answered: the client retries with its
nonce), then runs the app's lifespan exit, which closes the connections to the servers.
"""

from __future__ import annotations

import logging

from deploy.settings import Settings

GRACEFUL_S = 10


def run(settings: Settings, port: int | None = None, loglevel: str = "info") -> int:
    import uvicorn

    from gateways.http.app import create_app

    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("aiokafka", "cassandra", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    api_port = settings.api_port if port is None else port
    print(f"api: http://{settings.host}:{api_port}/ (OpenAPI at /openapi.json, docs at /docs)")
    config = uvicorn.Config(
        create_app(settings, port=api_port),
        host=settings.host,
        port=api_port,
        loop="uvloop",
        lifespan="on",
        log_level=loglevel,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn returns after a failed startup too (the lifespan could not connect).
    return 0 if server.started else 1
