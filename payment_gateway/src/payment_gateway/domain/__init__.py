"""Pure domain model: payments, their status machine, card and money rules.

Nothing in this package imports the web framework, the database or the HTTP client.
"""
