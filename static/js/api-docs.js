// Renders /api/v1/openapi.json with the vendored Swagger UI (no inline script: strict CSP).
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  if (!root || !window.SwaggerUIBundle) {
    return;
  }
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    defaultModelsExpandDepth: 0,
    docExpansion: "list",
  });
});
