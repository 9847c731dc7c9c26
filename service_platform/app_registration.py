"""The order API's Entra ID app registration: the names of its delegated scope and its app roles.

docs/sign-in.md explains which caller gets which; the local identity provider issues the same names.
"""

#: Delegated scope of a customer's token: place and read the customer's own orders.
CUSTOMER_SCOPE = "Orders.ReadWrite"
#: App role of a trusted backend (app-only token): place orders naming the customer in the body.
SUBMIT_ON_BEHALF_ROLE = "Orders.SubmitOnBehalf"
#: App role of a service that reads any order's status (the WebSocket service's identity).
READ_ALL_ROLE = "Orders.Read.All"
#: App role of operators (users or applications): read any order.
ADMIN_ROLE = "Orders.Admin"
