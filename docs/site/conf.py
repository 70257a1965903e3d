"""Sphinx configuration of the course's static site; build it with ``crl site`` (crl_helpers.site), which
assembles the source folder (README as index.md, the executed notebooks) and adds MathJax's folder to
``html_static_path`` (with the widget manager's folder).

Everything a page loads is served from the site itself: no CDN, no web fonts from another host.
"""
project = "Contrastive representation learning, hands on"
author = "the crl_helpers authors"
copyright = "the crl_helpers authors (code: MIT; prose: CC BY 4.0)"

extensions = ["myst_nb", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # a notebook may step from # to ### (a page's headings, not the site's)

# The notebooks arrive executed (crl_helpers.site.execute_notebooks); Sphinx only renders them.
nb_execution_mode = "off"
nb_merge_streams = True  # one block per cell for printed text, as JupyterLab shows it
# Widgets render from the state saved in the executed notebooks, by a local @jupyter-widgets/html-manager
# (crl_helpers.site fetches it, require.js and anywidget from npm into _static/widgets/); crl-widgets.js points
# require.js at the local anywidget. myst-nb adds these scripts, in this order, to pages that hold widgets.
nb_ipywidgets_js = {
    "widgets/require.js": {},
    "crl-widgets.js": {},
    "widgets/html-manager/embed-amd.js": {},
}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax 3's single-file TeX-to-SVG build, served from _static/mathjax (crl_helpers.site fetches it from npm
# once): SVG output draws its glyphs itself, so no font file is fetched. No menu: it would load more files.
mathjax_path = "mathjax/tex-svg-full.js"
mathjax3_config = {"options": {"enableMenu": False}, "svg": {"fontCache": "global"}}

html_theme = "pydata_sphinx_theme"
html_title = "Contrastive representation learning"
html_static_path = ["_static"]  # crl_helpers.site adds the MathJax folder
html_css_files = ["site.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "show_prev_next": True,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 9,
    "show_toc_level": 2,
    "navigation_depth": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_context = {"default_mode": "auto"}  # light or dark as the reader's system is (an empty mode logs an error)
html_sidebars = {"**": ["sidebar-nav-bs"]}


def setup(app):
    # Notebook titles hold math and show in every page's navigation: load MathJax on every page.
    app.set_html_assets_policy("always")
