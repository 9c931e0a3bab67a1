"""Avro schemas of every topic, the typed records they define, and the codec.

- ``avro/*.avsc``: the schemas (``avro/released/``: snapshots of released versions).
- :mod:`schemas.records`: one frozen dataclass per schema.
- :mod:`schemas.catalog`: the parsed schemas and which topic carries which.
- :mod:`schemas.codec`: Confluent wire format, with a local schema cache.
- :mod:`schemas.registry`: client for the Confluent-compatible registry API.
- :mod:`schemas.compat`: the local BACKWARD compatibility check.
- :mod:`schemas.errors`: errors with stable codes.

docs/schemas.md tells data teams how to read the topics.
"""
