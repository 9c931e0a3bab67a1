"""`livecomments worker`: one process of the topology (a member of the consumer group)."""

from __future__ import annotations

import sys

from deploy.settings import Settings


def run(settings: Settings, index: int, loglevel: str = "info") -> int:
    import mode.loop

    from topologies.app import build

    mode.loop.use("uvloop")
    (settings.state_path / "workers" / f"worker-{index}").mkdir(parents=True, exist_ok=True)
    app = build(settings, index)
    # Faust's own command line starts the worker (signals, logging, web server); the
    # settings object already decided everything it would read from flags.
    sys.argv = [
        "livecomments-worker",
        "worker",
        "--loglevel",
        loglevel,
        "--web-port",
        str(settings.worker_port + index),
        "--web-host",
        settings.host,
        "--web-bind",
        settings.host,
    ]
    app.main()
    return 0
