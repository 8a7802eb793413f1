"""The pure domain: no awaits, no I/O, no SQLAlchemy/httpx/websockets imports.

Time is always passed in (an injected clock at the edges), money is always ``Decimal``.
"""
