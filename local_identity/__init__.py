"""A development identity provider: OIDC discovery, a JWKS of RS256 keys kept in ``.local/``, and access
tokens shaped like Entra ID's (v2.0) for named development customers, an operator and a backend client.

Only for local work and tests. The function app validates its tokens with exactly the code that validates
Entra ID's in Azure; issuer, audience and the JWKS location are the only settings that differ.
"""
