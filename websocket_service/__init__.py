"""Real-time order status over WebSockets.

``websocket_service.core`` is the pure core (frames, subscriptions, dedup, send-queue policy, routing
decisions); ``websocket_service.notifier`` is the service layer that drives it through the ports in
``websocket_service.ports``; the adapters wrap Redis, httpx and Service Bus; ``websocket_service.app`` is
the Starlette shell and ``websocket_service.bootstrap`` the composition root. Run with
``python -m websocket_service``.
"""
