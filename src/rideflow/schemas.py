"""Building blocks every domain's request and response bodies share: ids, coordinates, points."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
Lat = Annotated[float, Field(ge=-90, le=90, description="WGS84 latitude in degrees")]
Lng = Annotated[float, Field(ge=-180, le=180, description="WGS84 longitude in degrees")]
STRATEGY_DOC = (
    "nearest; rating (best rated within the radius, distance breaks ties); eta "
    "(distance over the driver's recent speed); batch (collected for a short window, then "
    "assigned with the other waiting orders at the least total pickup distance). The city's "
    "default when absent."
)


class Body(BaseModel):
    """Request bodies refuse fields they do not know, so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class Point(Body):
    lat: Lat
    lng: Lng
