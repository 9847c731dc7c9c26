"""The demo catalog, loaded from ``catalog_seed.json`` into ``products``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from orders.adapters.sql.schema import products
from orders.domain.model import Product

CATALOG_SEED = Path(__file__).with_name("catalog_seed.json")


def load_catalog(path: Path = CATALOG_SEED) -> list[Product]:
    """The products listed in a seed file: ``{"currency": "EUR", "products": [{"sku", "name", "unitPrice",
    "stock"}]}`` (a product may carry its own ``currency``); prices are decimal strings."""
    document = json.loads(path.read_text(encoding="utf-8"))
    default_currency = document.get("currency")
    catalog = []
    for entry in document["products"]:
        currency = entry.get("currency", default_currency)
        if not currency:
            raise ValueError(f"{path}: product {entry.get('sku')!r} has no currency and the file sets none")
        catalog.append(Product(sku=entry["sku"], name=entry["name"], unit_price=Decimal(entry["unitPrice"]),
                               currency=currency, stock=int(entry["stock"])))
    return catalog


def seed_catalog(engine: Engine, path: Path = CATALOG_SEED) -> int:
    """Insert the seed file's products that are not in the database yet and return how many were added.

    Idempotent, and it never touches existing rows: restarting the local run keeps the stock that orders
    have already taken.
    """
    catalog = load_catalog(path)
    for attempt in (1, 2):
        try:
            with engine.begin() as connection:
                existing = set(connection.scalars(select(products.c.sku)))
                missing = [product for product in catalog if product.sku not in existing]
                if missing:
                    connection.execute(insert(products), [
                        {"sku": p.sku, "name": p.name, "unit_price": p.unit_price, "currency": p.currency,
                         "stock": p.stock}
                        for p in missing
                    ])
                return len(missing)
        except IntegrityError:
            # A concurrent seed inserted some of the same SKUs first; the second pass skips them.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
