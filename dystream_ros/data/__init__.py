"""Training and evaluation data: the on-disk sample format shared by extraction, the corpus and training."""
