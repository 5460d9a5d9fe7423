"""Places held by uploads being received (serve/analyses/admission.py): counted per key and
in all, given back on release, and freed on their own when their ingress never came back."""

from __future__ import annotations

from serve.analyses.admission import Reservations


def test_a_held_place_counts_until_released_or_expired():
    now = [0.0]
    held = Reservations(ttl_s=600, clock=lambda: now[0])
    a1, a2, b1 = held.hold("a"), held.hold("a"), held.hold("b")
    assert (held.count("a"), held.count("b"), held.count(everyone=True)) == (2, 1, 3)
    held.release(a1)
    held.release(a1)  # twice, or a ticket never held: nothing
    held.release(None)
    assert (held.count("a"), held.count(everyone=True)) == (1, 2)
    now[0] = 599.0
    assert held.count(everyone=True) == 2
    now[0] = 600.0  # an ingress that died mid-upload: its places come back
    assert held.count(everyone=True) == 0 and held.count("a") == 0
    assert held.count("b") == 0 and a2 != b1
