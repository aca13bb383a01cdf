"""The DCGAN baseline: settings (torch-free), networks, trainer and its training figures."""
