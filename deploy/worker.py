"""`livecomments worker`: one process of the topology (a member of the consumer group)."""

from __future__ import annotations

from deploy.settings import Settings


def run(settings: Settings, index: int, loglevel: str = "info") -> int:
    import mode.loop

    from topologies import faust_compat
    from topologies.app import build

    mode.loop.use("uvloop")
    (settings.state_path / "workers" / f"worker-{index}").mkdir(parents=True, exist_ok=True)
    app = build(settings, index)
    # Faust's own command line starts the worker (signals, logging, web server); the
    # settings object already decided everything it would read from flags.
    faust_compat.run_worker(
        app,
        faust_compat.worker_argv(
            loglevel=loglevel,
            web_port=settings.worker_port + index,
            web_host=settings.host,
        ),
    )
    return 0
