"""Moved to ``connectors.state_reader`` (gateways read it too; it is not a topology).

Kept as a re-export until topologies/app.py and gateways/server.py import it from there.
"""

from __future__ import annotations

from connectors.state_reader import GlobalState, StateReader, exit_process

__all__ = ["GlobalState", "StateReader", "exit_process"]
