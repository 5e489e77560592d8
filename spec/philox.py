"""Philox4x32-10 (Random123's ``philox4x32`` with 10 rounds): the round constants the gateware and the
golden model (:mod:`tridsa.sw.philox`) share.

One round maps ``(c0, c1, c2, c3)`` with round key ``(k0, k1)`` to::

    hi0:lo0 = M0 * c0      hi1:lo1 = M1 * c2          (32 x 32 -> 64-bit products)
    (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)

and round ``i`` (0..9) uses the key ``(k0 + i * W0, k1 + i * W1) mod 2**32``.
"""

__all__ = ["M0", "M1", "W0", "W1", "ROUNDS"]

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
ROUNDS = 10
