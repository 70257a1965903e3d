"""The course as a static HTML site, and its lecture page: publishing, kept out of the learner's package.

``crl site`` and ``crl lecture`` (:mod:`crl_helpers.cli`) import this package only when they run; it needs the
``[site]`` extra (``pip install -e ".[site]"``) and a clone of the repository (the notebooks, the README and
``docs/site/conf.py``).

- :mod:`crl_site.build`: execute the notebooks in a tier, render them with Sphinx and myst-nb, the lecture page.
- :mod:`crl_site.pages`: what the pages add to the notebooks: the home page (how to start), download and
  Colab links from the one configured address, navigation titles, figures' alt text, no build paths.

Example:
    >>> from crl_site import build_site, build_lecture
    >>> callable(build_site) and callable(build_lecture)
    True
"""
from crl_site.build import (SiteBusy, SiteError, SiteResult, build_lecture, build_site, check_out_dir,
                            lecture_notebook, require_clone, require_site_packages)

__all__ = ["SiteBusy", "SiteError", "SiteResult", "build_lecture", "build_site", "check_out_dir",
           "lecture_notebook", "require_clone", "require_site_packages"]
