// Starts Swagger UI on the service's own OpenAPI document. Loaded as a file, never inline:
// the page's Content-Security-Policy allows scripts from this origin only.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The public validator would be sent our document: keep everything on this origin.
    validatorUrl: null,
    // Keys typed into "Authorize" stay in this tab's memory, gone on reload.
    persistAuthorization: false,
    tryItOutEnabled: false,
    displayRequestDuration: true,
  });
});
