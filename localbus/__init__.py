"""A local Azure Service Bus–compatible AMQP 1.0 broker for development and tests.

Run it with ``python -m localbus``; point any azure-servicebus program at the connection string it prints.
"""

from .broker import Broker
from .config import BrokerConfig, ConfigError, QueueConfig, default_config, load_config

__all__ = ["Broker", "BrokerConfig", "ConfigError", "QueueConfig", "default_config", "load_config"]
