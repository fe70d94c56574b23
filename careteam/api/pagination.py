"""Keyset pages for lists that grow without bound (the audit trail): the cost of a page
does not depend on how deep it is, and no COUNT(*) of the table is made. The answer keeps
the shape of the other lists' `next`, `previous` and `results`; `count` is left out."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from careteam import keyset


class KeysetPagination(BasePagination):
    """Newest first by (`at`, `id`), `page_size` rows; `?cursor=` from a `next` or
    `previous` link. A cursor this list did not make answers 400."""

    fields = ("at", "id")
    page_size = 50
    salt = "api"

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        try:
            self.page = keyset.paginate(
                queryset,
                request.query_params.get(keyset.PARAM),
                fields=self.fields,
                size=self.page_size,
                salt=f"api.{self.salt}",
                few_rows=bool(request.query_params.get("patient")),
            )
        except keyset.BadCursor as exc:
            raise ValidationError(
                {keyset.PARAM: ["Not a cursor of this list: start from the first page."]}
            ) from exc
        return self.page.rows

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), "page")
        return replace_query_param(url, keyset.PARAM, cursor)

    def get_paginated_response(self, data):
        return Response(
            {
                "next": self._link(self.page.next_cursor),
                "previous": self._link(self.page.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": keyset.PARAM,
                "required": False,
                "in": "query",
                "description": "The page after (or before) the one that gave this cursor in its next or previous link.",
                "schema": {"type": "string"},
            }
        ]
