// Runs between require.js and the widget manager (@jupyter-widgets/html-manager) on pages with widgets: the
// manager loads each widget's module through require.js, so point the one third-party module the course uses,
// anywidget, at the copy in _static/widgets/, and give the manager that folder as its module "CDN", so that
// nothing is ever fetched from another host.
(function () {
  const here = document.currentScript.src.replace(/[^/]*$/, "");  // .../_static/
  const widgets = here + "widgets/";
  window.requirejs.config({ paths: { anywidget: widgets + "anywidget" } });
  document.currentScript.setAttribute("data-jupyter-widgets-cdn", widgets);
  // Widgets drawn by ipywidgets' own controls (the augmentation explorer) need a Python kernel to redraw:
  // on a page they show the state the notebook saved, so say so and keep their controls still.
  const style = document.createElement("style");
  style.textContent = ".widget-subarea > .widget-vbox::before { content: 'These controls need a Python kernel: "
    + "run the notebook in Jupyter to move them. Shown: the settings and figure the notebook ended with.'; "
    + "display: block; font-style: italic; margin: 4px 0; opacity: 0.8; }"
    + ".widget-subarea > .widget-vbox .widget-inline-hbox, .widget-subarea > .widget-vbox .widget-button "
    + "{ pointer-events: none; opacity: 0.6; }";
  document.head.appendChild(style);
})();
