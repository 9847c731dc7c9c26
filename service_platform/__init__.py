"""What every deployable service of the project needs and the business core must not know: Azure identity,
Service Bus and Redis clients, back-off, correlationId and notify-token rules, and one log schema.

Standard library at import; the Azure and Redis modules import their SDKs only where they are used.
"""
