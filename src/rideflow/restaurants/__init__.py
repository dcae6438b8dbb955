"""Restaurants, their menus (SQL, cached in Redis) and food orders with limited stock (Redis)."""
