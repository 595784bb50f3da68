// "Show" beside a password field (OWASP ASVS 2.1.12): the person can check what they typed.
// The button comes from the page (templates/_reveal.html), hidden until this script runs, so
// without JavaScript nothing is offered that would not work. A plain file: the page runs no
// inline script.
(function () {
  "use strict";

  function wire(button) {
    if (button.dataset.revealWired) return;
    const input = document.getElementById(button.dataset.revealFor || "");
    if (!input) return;
    button.dataset.revealWired = "true";
    button.hidden = false;
    button.addEventListener("click", function () {
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      button.setAttribute("aria-pressed", String(show));
      input.focus();
    });
  }

  function wireAll(root) {
    root.querySelectorAll("button[data-reveal-for]").forEach(wire);
  }

  // Masked again before sending, so the browser never offers to keep the password as text.
  document.addEventListener(
    "submit",
    function (event) {
      event.target.querySelectorAll("button[data-reveal-for]").forEach(function (button) {
        const input = document.getElementById(button.dataset.revealFor || "");
        if (input && input.type === "text") {
          input.type = "password";
          button.setAttribute("aria-pressed", "false");
        }
      });
    },
    true,
  );
  // Forms htmx swaps in (a refused one shown again) get their buttons wired too.
  document.addEventListener("htmx:load", function (event) {
    wireAll(event.target);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      wireAll(document);
    });
  } else {
    wireAll(document);
  }
})();
