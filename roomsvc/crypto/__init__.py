"""Cryptography: envelope encryption of secrets, key material, participant tokens.

``cryptography`` is used only in this package; PyJWT only in :mod:`roomsvc.crypto.tokens`.
"""
