"""crl_helpers: the package behind the contrastive representation learning course."""
