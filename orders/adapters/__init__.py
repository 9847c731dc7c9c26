"""Adapters between the business core and the outside world (Service Bus, SQL, Redis)."""
