"""Sphinx configuration of the course's static site; build it with ``crl site`` (the crl_site package), which
assembles the source folder (the home page, the executed notebooks, the README and the reference pages) and
adds MathJax's folder to ``html_static_path`` (with the widget manager's folder) and the downloadable
notebooks to ``html_extra_path``.

Everything a page loads is served from the site itself: no CDN, no web fonts from another host.
"""
project = "Contrastive representation learning, hands on"
author = "the crl_helpers authors"
copyright = "the crl_helpers authors (code: MIT; prose: CC BY 4.0)"

extensions = ["myst_nb", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # a notebook may step from # to ### (a page's headings, not the site's)

# The notebooks arrive executed (crl_site.build.execute_notebooks); Sphinx only renders them.
nb_execution_mode = "off"
nb_merge_streams = True  # one block per cell for printed text, as JupyterLab shows it
# Widgets render from the state saved in the executed notebooks, by a local @jupyter-widgets/html-manager
# (crl_site fetches it, require.js and anywidget from npm into _static/widgets/); crl-widgets.js points
# require.js at the local anywidget. myst-nb adds these scripts, in this order, to pages that hold widgets.
nb_ipywidgets_js = {
    "widgets/require.js": {},
    "crl-widgets.js": {},
    "widgets/html-manager/embed-amd.js": {},
}
myst_enable_extensions = ["dollarmath", "amsmath"]
# Text as written: docs/errors.md quotes messages exactly (--device must not become an en dash, nor ' a curly quote).
smartquotes = False
myst_heading_anchors = 3

# MathJax 3's single-file TeX-to-SVG build, served from _static/mathjax (crl_site fetches it from npm
# once): SVG output draws its glyphs itself, so no font file is fetched. No menu: it would load more files.
mathjax_path = "mathjax/tex-svg-full.js"
mathjax3_config = {"options": {"enableMenu": False}, "svg": {"fontCache": "global"}}

html_theme = "pydata_sphinx_theme"
html_title = "Contrastive representation learning"
html_static_path = ["_static"]  # crl_site adds the MathJax folder
html_css_files = ["site.css"]
html_show_sourcelink = False
html_copy_source = False
# Search results list the matching pages without an excerpt: an excerpt is fetched from the page, which a
# browser refuses from file:// (and it would show the pages' TeX source, not the typeset math).
html_show_search_summary = False
templates_path = ["_templates"]
html_theme_options = {
    "show_prev_next": True,
    "navigation_with_keys": False,
    # The pages are listed in the sidebar (_templates/crl-course-nav.html), not in the header: ten titles
    # there took four lines at 1280 px and pushed search off a phone's screen.
    "navbar_center": [],
    "show_toc_level": 2,
    "navigation_depth": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_context = {"default_mode": "auto"}  # light or dark as the reader's system is (an empty mode logs an error)
html_sidebars = {"**": ["crl-course-nav"]}


def setup(app):
    # Notebook titles hold math and show in every page's navigation: load MathJax on every page.
    app.set_html_assets_policy("always")
