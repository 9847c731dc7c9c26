"""Adapters around the business core: SQL persistence (``orders.adapters.sql``) and the system clock."""
