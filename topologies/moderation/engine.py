"""The moderation engine a worker runs, built from the settings (the one I/O step)."""

from __future__ import annotations

import logging

from deploy.settings import Settings
from topologies.moderation import runtime
from topologies.stages.moderate import ModelEngine, ModerationEngine, RulesEngine

log = logging.getLogger(__name__)


def build(settings: Settings) -> ModerationEngine:
    """Rules and models, or rules alone when ``moderation_ml`` is off.

    A model that does not load leaves the engine running *degraded*: what needs that model
    is held for review (see ``runtime.load``), nothing is published unmoderated.
    """
    if not settings.moderation_ml:
        return RulesEngine()
    models = runtime.load(settings.moderation_models_dir)
    if models.unavailable:
        log.error(
            "moderation degraded, comments will be held: %s",
            "; ".join(f"{k}: {v}" for k, v in models.unavailable.items()),
        )
    return ModelEngine(models)
