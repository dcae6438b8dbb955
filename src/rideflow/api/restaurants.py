"""Restaurants and their menus: CRUD on SQL; menu reads through the Redis cache, with a strong
ETag and 304 for `If-None-Match`. Writes are ADMIN's; any authenticated caller reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from rideflow.api.deps import RestaurantsDep
from rideflow.api.problems import responses
from rideflow.api.security import AdminCaller, AnyCaller
from rideflow.restaurants.cache import MenuCache
from rideflow.restaurants.schemas import (
    MenuItemCreate,
    MenuItemPatch,
    MenuItemView,
    MenuView,
    RestaurantCreate,
    RestaurantPage,
    RestaurantPatch,
    RestaurantView,
)
from rideflow.restaurants.store import Restaurants
from rideflow.schemas import ID_PATTERN

router = APIRouter(prefix="/v1/restaurants", tags=["restaurants"])
RestaurantId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
ItemId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


@router.post(
    "",
    status_code=201,
    response_model=RestaurantView,
    responses=responses(422),
    summary="Register a restaurant (its location must lie in a configured city)",
)
async def create_restaurant(
    body: RestaurantCreate, caller: AdminCaller, restaurants: RestaurantsDep
) -> RestaurantView:
    return await restaurants.create(body)


@router.get(
    "",
    response_model=RestaurantPage,
    responses=responses(422),
    summary="Restaurants, by id, optionally of one city; `after` pages on",
)
async def list_restaurants(
    caller: AnyCaller,
    restaurants: RestaurantsDep,
    city: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(min_length=1, max_length=64, pattern=ID_PATTERN)] = None,
) -> RestaurantPage:
    return await restaurants.page(city, limit, after)


@router.get(
    "/{restaurant_id}",
    response_model=RestaurantView,
    responses=responses(404, 422),
    summary="A restaurant",
)
async def get_restaurant(
    restaurant_id: RestaurantId, caller: AnyCaller, restaurants: RestaurantsDep
) -> RestaurantView:
    return await restaurants.get(restaurant_id)


@router.patch(
    "/{restaurant_id}",
    response_model=RestaurantView,
    responses=responses(404, 422),
    summary="Change a restaurant (not its city)",
)
async def patch_restaurant(
    restaurant_id: RestaurantId,
    body: RestaurantPatch,
    caller: AdminCaller,
    restaurants: RestaurantsDep,
) -> RestaurantView:
    return await restaurants.patch(restaurant_id, body)


@router.delete(
    "/{restaurant_id}",
    status_code=204,
    responses=responses(404, 409, 422),
    summary="Delete a restaurant and its menu; 409 while it has open food orders",
)
async def delete_restaurant(
    restaurant_id: RestaurantId, caller: AdminCaller, restaurants: RestaurantsDep
) -> Response:
    await restaurants.delete(restaurant_id)
    return Response(status_code=204)


@router.get(
    "/{restaurant_id}/menu",
    response_model=MenuView,
    responses={**responses(404, 422), 304: {"description": "Not modified (`If-None-Match`)"}},
    summary="The menu, cached: strong `ETag`, 304 for a matching `If-None-Match`",
)
async def get_menu(restaurant_id: RestaurantId, caller: AnyCaller, request: Request) -> Response:
    # The services straight from the request state: this is the hot read, and each dependency
    # pass costs more than the cache hit's own Python.
    restaurants: Restaurants = request.state.restaurants
    menus: MenuCache = request.state.menus
    city = restaurants.city_of_id(restaurant_id)
    menu = await menus.menu(city, restaurant_id)
    headers = {"ETag": menu.etag, "Cache-Control": "no-cache"}
    wanted = request.headers.get("if-none-match")
    if wanted is not None and (
        wanted.strip() == "*" or menu.etag in (t.strip() for t in wanted.split(","))
    ):
        return Response(status_code=304, headers=headers)
    return Response(menu.body, media_type="application/json", headers=headers)


@router.post(
    "/{restaurant_id}/menu",
    status_code=201,
    response_model=MenuItemView,
    responses=responses(404, 422),
    summary="Add an item to the menu (`stock` and `per_customer_limit` make it limited)",
)
async def add_item(
    restaurant_id: RestaurantId,
    body: MenuItemCreate,
    caller: AdminCaller,
    restaurants: RestaurantsDep,
) -> MenuItemView:
    return await restaurants.add_item(restaurant_id, body)


@router.patch(
    "/{restaurant_id}/menu/{item_id}",
    response_model=MenuItemView,
    responses=responses(404, 422),
    summary="Change an item; a new `stock` restarts its live count from it",
)
async def patch_item(
    restaurant_id: RestaurantId,
    item_id: ItemId,
    body: MenuItemPatch,
    caller: AdminCaller,
    restaurants: RestaurantsDep,
) -> MenuItemView:
    return await restaurants.patch_item(restaurant_id, item_id, body)


@router.delete(
    "/{restaurant_id}/menu/{item_id}",
    status_code=204,
    responses=responses(404, 422),
    summary="Remove an item from the menu",
)
async def delete_item(
    restaurant_id: RestaurantId, item_id: ItemId, caller: AdminCaller, restaurants: RestaurantsDep
) -> Response:
    await restaurants.delete_item(restaurant_id, item_id)
    return Response(status_code=204)
