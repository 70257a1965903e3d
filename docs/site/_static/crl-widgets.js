// Runs between require.js and the widget manager (@jupyter-widgets/html-manager) on pages with widgets: the
// manager loads each widget's module through require.js, so point the one third-party module the course uses,
// anywidget, at the copy in _static/widgets/, and give the manager that folder as its module "CDN", so that
// nothing is ever fetched from another host.
(function () {
  const here = document.currentScript.src.replace(/[^/]*$/, "");  // .../_static/
  const widgets = here + "widgets/";
  window.requirejs.config({ paths: { anywidget: widgets + "anywidget" } });
  document.currentScript.setAttribute("data-jupyter-widgets-cdn", widgets);
})();
