"""Single sign-on with OpenID Connect: the company's identity provider signs employees in.

``config`` reads the settings and finds the provider's endpoints, ``accounts`` turns the provider's claims
into a portal account (or a refusal), ``backend`` is mozilla-django-oidc's backend configured from them, and
``views`` holds the sign-in page, the start of a sign-in at the provider and the return from it.
"""
