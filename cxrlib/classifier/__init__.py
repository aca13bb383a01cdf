"""The classifier stage: settings, ResNet networks, training sets (arms), trainer, evaluation
metrics with patient-bootstrap CIs, the comparison of arms, and its figures.
"""
