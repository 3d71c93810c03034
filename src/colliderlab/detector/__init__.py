"""Fast (Delphes-class) detector simulation: a card, a tracker, calorimeters, physics objects.

>>> from colliderlab.detector import load_card, simulate   # doctest: +SKIP
>>> card = load_card("generic_lhc")
>>> simulate("ttbar_gen", "ttbar_reco", card=card)
"""

from colliderlab.detector.card import DetectorCard, load_card

__all__ = ["DetectorCard", "load_card"]
