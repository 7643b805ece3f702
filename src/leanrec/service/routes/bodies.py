"""The request bodies the routes accept, as pydantic models, and their documentation.

Routes that take one-or-many bodies, or must report all of a batch's errors at once, parse
their JSON themselves (:func:`~.deps.validate` with the adapters here) and document the
body through :func:`documents`.
"""

import datetime as dt
from typing import Annotated, Any, Literal, Union

from fastapi import Path, Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    field_validator,
)

from ..experiments import DEFAULT_CLICK_KINDS, DEFAULT_WINDOW_S
from ..inputs import FILTER_PATTERN, MAX_FILTERS, MAX_PAIRS


def _id(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


#: an id: 1 to 256 characters, no ``/``, no control characters (the same rule in bodies and paths)
ID_MAX, ID_PATTERN = 256, r"^[^\x00-\x1f/]+$"
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# (the constraints before the BeforeValidator: after it, pydantic leaves the pattern out of the JSON schema)
Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN), BeforeValidator(_id)]
#: the same rule for an id in the path: validated (422 at ``["path", name]``) and documented
PathId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]
PathName = Annotated[str, Path(pattern=NAME_PATTERN)]
#: the ``filter`` query parameter: repeated, each value ``field:value[,field:value...]``
Filters = Annotated[list[Annotated[str, StringConstraints(pattern=FILTER_PATTERN)]] | None,
                    Query(max_length=MAX_FILTERS, description=f"field:value, e.g. genres:Comedy; repeated (at most "
                          f"{MAX_FILTERS}) or comma-separated (at most {MAX_PAIRS} per value), all must hold")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Scalar = Union[StrictBool, StrictInt, Finite, Annotated[str, StringConstraints(max_length=10_000)]]
FieldValue = Union[Scalar, Annotated[list[Scalar], Field(max_length=1000)]]


class ItemBody(BaseModel):
    """An item: the text the encoder reads, and fields for filters and display."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=100_000, pattern=r"\S",
                      description="Text to encode (title, description, ...); not empty or blank")
    fields: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], FieldValue] = Field(
        default_factory=dict, max_length=100, description="e.g. {\"genres\": [\"Crime\"], \"price\": 9.5}")

    @field_validator("text")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("text must not be empty")
        return v


class ItemWithId(ItemBody):
    item_id: Id


class ItemBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemWithId] = Field(min_length=1)


class EventBody(BaseModel):
    """One interaction. ``timestamp``: Unix seconds or ISO 8601, UTC when it names no zone (default: now)."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id
    item_id: Id
    timestamp: Finite | dt.datetime | None = None
    kind: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "view"
    value: Finite | None = None
    event_id: Id | None = Field(None, description="Your id for this event (optional): an event whose id is "
                                                  "already stored is skipped, so a retried POST stores it once")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventBody] = Field(min_length=1)


class ModelSwap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(description="A model folder written by `leanrec model train`; null = content model")


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Kind = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]


class ArmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    share: Finite | None = Field(None, description="Traffic share (A/B), > 0; all arms' shares sum to 1. "
                                                   "Omit on every arm for equal shares")
    model: str | None = Field(None, max_length=4096,
                              description="A model folder written by `leanrec model train`; null = the content model")


class ExperimentBody(BaseModel):
    """An online experiment: ``ab`` assigns each user one arm; ``interleave`` mixes exactly
    two arms' rankings in every list (team draft) and credits clicks to the item's team."""

    model_config = ConfigDict(extra="forbid")
    id: Name
    mode: Literal["ab", "interleave"] = "ab"
    arms: list[ArmBody] = Field(min_length=2, max_length=20)
    attribution_window_s: Annotated[Finite, Field(gt=0, le=90 * 86_400)] = DEFAULT_WINDOW_S
    click_kinds: list[Kind] = Field(default_factory=lambda: list(DEFAULT_CLICK_KINDS), min_length=1, max_length=20)


ID = TypeAdapter(Id)
ITEM = TypeAdapter(ItemBody)
ANY_EVENTS = TypeAdapter(Union[EventBody, Annotated[list[EventBody], Field(min_length=1)], EventBatch])
ANY_ITEMS = TypeAdapter(Union[ItemBatch, Annotated[list[ItemWithId], Field(min_length=1)]])
ITEMS = TypeAdapter(ItemBatch)
EVENTS = TypeAdapter(EventBatch)
SWAP = TypeAdapter(ModelSwap)
EXPERIMENT = TypeAdapter(ExperimentBody)


def _inline(schema: dict) -> dict:
    """A JSON schema with its ``$defs`` inlined, to embed in the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def documents(adapter: TypeAdapter) -> dict:
    """``openapi_extra`` for a route that parses its JSON body itself (for one-or-many
    bodies and all-or-nothing batch errors): the body's schema still appears in /docs."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline(adapter.json_schema())}}}}
