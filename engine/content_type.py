"""What an HTTP answer's Content-Type says its body is, read the same way by the ERP's API source
(engine.sources._api_requests) and the import API target (engine.targets._http_client)."""
from __future__ import annotations


def says_json(content_type: str) -> bool:
    """application/json, or a JSON type such as application/problem+json, by the Content-Type
    header's value (its parameters, such as charset, aside)."""
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")
