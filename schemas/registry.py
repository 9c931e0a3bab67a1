"""A small synchronous client for the Confluent-compatible schema registry API.

The local stack runs Apicurio Registry, which serves this API under
``/apis/ccompat/v7``; ``Settings.registry_address`` already points there, and the same
client works against Confluent Schema Registry. Only what the platform needs is here:
register, fetch by id, compatibility levels and checks, subjects.

Calls happen at startup (``AvroCodec.register_all``) and on a decoder's cache miss,
never per record, so a plain blocking ``httpx.Client`` is enough; an asyncio caller at
startup may run them in a thread. Every failure is a :class:`RegistryError` with a
stable code; transport failures are ``registry_unreachable`` and worth a retry.

Differences between registries that callers may meet: Apicurio answers a compatibility
check against a subject that does not exist yet with "compatible", Confluent with
``subject_not_found``; Apicurio returns the same id when one schema is registered under
several subjects, as Confluent does.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote

import httpx

from schemas.errors import RegistryError, RegistryErrorCode

CompatibilityLevel = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

# Confluent's error_code values (also used by Apicurio's ccompat API).
_NOT_FOUND_CODES: dict[int, RegistryErrorCode] = {
    40401: "subject_not_found",
    40402: "version_not_found",
    40403: "schema_not_found",
}


class RegistrySettings(Protocol):
    """The part of ``deploy.settings.Settings`` this package reads.

    A protocol rather than the class itself keeps the schemas package free of the
    settings module's dependencies; ``Settings`` satisfies it as is.
    """

    @property
    def registry_address(self) -> str: ...

    @property
    def registry_timeout_s(self) -> float: ...

    @property
    def schema_compatibility(self) -> CompatibilityLevel: ...


class SchemaRegistry(Protocol):
    """What the codec needs from a registry; :class:`RegistryClient` is the real one."""

    def register(self, subject: str, schema: str) -> int: ...

    def schema_by_id(self, schema_id: int) -> str: ...

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str


@dataclass(frozen=True, slots=True)
class CompatibilityResult:
    is_compatible: bool
    messages: tuple[str, ...] = ()


class RegistryClient:
    """Blocking client for ``base_url`` (e.g. ``http://127.0.0.1:8081/apis/ccompat/v7``).

    Use as a context manager, or call :meth:`close`, to release the connection pool.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": f"{_CONTENT_TYPE}, application/json"},
        )

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> Self:
        return cls(settings.registry_address, timeout_s=settings.registry_timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def register(self, subject: str, schema: str) -> int:
        """Register an Avro schema (JSON text) under ``subject``; return its id.

        Idempotent: registering a schema the subject already has returns the same id.
        Raises ``incompatible_schema`` when the subject's compatibility level refuses it.
        """
        body = self._request("POST", f"/subjects/{_seg(subject)}/versions", {"schema": schema})
        return int(body["id"])

    def schema_by_id(self, schema_id: int) -> str:
        """The schema text registered with ``schema_id`` (``schema_not_found`` if none)."""
        body = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        return str(body["schema"])

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version registered under ``subject``."""
        body = self._request("GET", f"/subjects/{_seg(subject)}/versions/latest")
        return RegisteredSchema(
            subject=str(body.get("subject", subject)),
            version=int(body["version"]),
            schema_id=int(body["id"]),
            schema=str(body["schema"]),
        )

    def subjects(self) -> list[str]:
        return [str(subject) for subject in self._request("GET", "/subjects")]

    def versions(self, subject: str) -> list[int]:
        return [int(v) for v in self._request("GET", f"/subjects/{_seg(subject)}/versions")]

    def compatibility(self, subject: str | None = None) -> str:
        """Compatibility level of ``subject``, or the global level when None."""
        path = "/config" if subject is None else f"/config/{_seg(subject)}"
        body = self._request("GET", path)
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        """Set the compatibility level of ``subject``, or the global level when None.

        A subject may be configured before its first schema is registered, so a new
        subject never accepts an unchecked second version.
        """
        path = "/config" if subject is None else f"/config/{_seg(subject)}"
        self._request("PUT", path, {"compatibility": level})

    def check_compatibility(self, subject: str, schema: str) -> CompatibilityResult:
        """Whether ``schema`` may be registered under ``subject`` as its next version,
        judged against the latest version by the subject's compatibility level."""
        body = self._request(
            "POST",
            f"/compatibility/subjects/{_seg(subject)}/versions/latest",
            {"schema": schema},
            params={"verbose": "true"},
        )
        messages = body.get("messages") or ()
        return CompatibilityResult(
            is_compatible=bool(body["is_compatible"]),
            messages=tuple(str(m) for m in messages),
        )

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Delete ``subject`` (soft; then hard with ``permanent``); return its versions."""
        params = {"permanent": "true"} if permanent else None
        body = self._request("DELETE", f"/subjects/{_seg(subject)}", params=params)
        return [int(v) for v in body]

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(
                method,
                path,
                json=payload,
                params=params,
                headers={"Content-Type": _CONTENT_TYPE} if payload is not None else None,
            )
        except httpx.TransportError as exc:
            raise RegistryError(
                "registry_unreachable",
                f"{method} {self.base_url}{path} failed: {exc.__class__.__name__}: {exc}",
            ) from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise RegistryError(
                    "registry_error",
                    f"{method} {path} answered {response.status_code} with a body that is not JSON",
                    status=response.status_code,
                ) from exc
        raise _error_from(method, path, response)


def _seg(subject: str) -> str:
    """A subject as one URL path segment (subjects may hold '/', '?' and the like)."""
    return quote(subject, safe="")


def _error_from(method: str, path: str, response: httpx.Response) -> RegistryError:
    status = response.status_code
    error_code: int | None = None
    detail = response.text.strip()[:500]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("error_code")
        error_code = raw_code if isinstance(raw_code, int) else None
        detail = str(body.get("message") or detail)
    code: RegistryErrorCode
    if error_code in _NOT_FOUND_CODES:
        code = _NOT_FOUND_CODES[error_code]
    elif status == 404:
        code = "schema_not_found" if path.startswith("/schemas/") else "subject_not_found"
    elif status == 409:
        code = "incompatible_schema"
    elif status == 422:
        code = "invalid_schema"
    else:
        code = "registry_error"
    return RegistryError(
        code, f"{method} {path} answered {status}: {detail or 'no detail'}", status=status
    )


class InMemoryRegistry:
    """A registry kept in a dict, for unit tests of code that uses the codec.

    Ids are shared by identical schema texts across subjects, as real registries do.
    It stores compatibility levels but checks nothing: compatibility is proven against
    the real registry in tests/integration and by ``schemas.compat`` locally.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._texts: dict[int, str] = {}
        self._subjects: dict[str, list[int]] = {}
        self.levels: dict[str | None, CompatibilityLevel] = {}

    def register(self, subject: str, schema: str) -> int:
        schema_id = self._ids.get(schema)
        if schema_id is None:
            schema_id = self._ids[schema] = len(self._ids) + 1
            self._texts[schema_id] = schema
        versions = self._subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        try:
            return self._texts[schema_id]
        except KeyError:
            raise RegistryError(
                "schema_not_found", f"no schema with id {schema_id}", status=404
            ) from None

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        self.levels[subject] = level

    def subjects(self) -> list[str]:
        return sorted(self._subjects)
