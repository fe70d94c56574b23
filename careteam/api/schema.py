"""OpenAPI post-processing: every API operation documents the errors it can answer, in
one place, so the schema stays accurate as endpoints are added."""

from __future__ import annotations

ERROR = {
    "type": "object",
    "description": "What went wrong, in words a person can act on.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": 'Field name -> list of messages; "detail" for errors about the whole request.',
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "object"}]
    },
}
STALE = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "current_version": {"type": "integer"}},
    "required": ["detail"],
}

ERRORS = {
    "400": ("ValidationError", "Invalid request: field-level messages; nothing was written."),
    "401": ("Error", "Not signed in (send Authorization: Token <token>, or a session cookie)."),
    "403": ("Error", "Visible but not yours to change (e.g. emergency access is read-only)."),
    "404": ("Error", "No such object, or not visible to you: the same answer."),
    "409": ("ValidationError", "Illegal status transition or conflicting state, with the reason."),
    "412": ("StaleVersion", "If-Match names an older version: someone changed it; nothing was written."),
    "428": ("Error", "If-Match is required to change this object."),
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def add_error_responses(result, generator, request, public):
    """Attach the error answers each API operation can give."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("ValidationError", VALIDATION_ERROR)
    schemas.setdefault("StaleVersion", STALE)
    for path, operations in result.get("paths", {}).items():
        if not path.startswith(("/api/v1/", "/hsds/")):
            continue
        for method, operation in operations.items():
            if method not in {"get", "post", "patch", "put", "delete"}:
                continue
            codes = ["401", "403", "404"]
            if method == "get":
                codes.append("400")  # malformed filter values
            if method in {"post", "patch", "put"}:
                codes += ["400", "409"]
            if method in {"patch", "put"}:
                codes += ["412", "428"]
            responses = operation.setdefault("responses", {})
            for code in codes:
                if code in responses:
                    continue
                name, description = ERRORS[code]
                responses[code] = {
                    "description": description,
                    "content": {"application/json": {"schema": _ref(name)}},
                }
    return result
