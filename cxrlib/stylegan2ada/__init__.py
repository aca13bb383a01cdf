"""StyleGAN2-ADA in plain PyTorch: settings (torch-free), networks, augmentation (ADA),
trainer, starting from published networks (official pickles read without running their code),
and its figures.
"""
