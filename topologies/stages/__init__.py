"""The pipeline's stages: pure functions over typed records, no I/O.

validate → moderate → enrich → publish; analytics aggregates what they decided. The
Faust agents in ``topologies/app.py`` wrap them with Kafka, tables and sinks.
"""
