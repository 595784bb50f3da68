// The API reference page: Swagger UI (swagger-ui-dist, served by the portal) reading the
// portal's own OpenAPI document. "Try it out" sends this session's CSRF token, as the viewer
// does, so state-changing calls work like the portal's own.
(function () {
  var root = document.getElementById('swagger-ui');
  if (!root || typeof window.SwaggerUIBundle !== 'function') return;
  var meta = document.querySelector('meta[name="csrf-token"]');
  window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    requestInterceptor: function (request) {
      if (meta) request.headers['X-CSRF-Token'] = meta.content;
      return request;
    },
  });
})();
