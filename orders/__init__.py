"""Order processing: the business core (``orders.domain``, ``orders.service_layer``), its adapters and
the composition root (``orders.bootstrap``). Azure Functions triggers live in ``function_app``."""
