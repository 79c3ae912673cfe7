"""Controls that make a run's figures believable (docs/controls.md).

- The canary (positive control, canary.py): an invented fact and habit, made into documents and
  chats from templates, trained with the real data and evaluated by the same evals. If its rows
  reached training and it did not move, the training did not take.
- The control arm (negative control): a `control` checkpoint trained like SFT on as many tokens
  of trait-free data, the teacher's answers without the trait system prompt
  (generate/untraited.py), so an effect can be told apart from the effect of any SFT at all.
"""

from traitforge.controls.canary import CANARY_ID, Canary, load_canary

__all__ = ["CANARY_ID", "Canary", "load_canary"]
