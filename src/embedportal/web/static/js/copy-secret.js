// "Copy" beside a secret shown once (Admin → API keys): puts it on the clipboard. The button
// comes from the page, hidden until this script runs; without it the field can still be
// selected and copied by hand. A plain file: the page runs no inline script.
(function () {
  "use strict";

  document.querySelectorAll("button[data-copy-from]").forEach(function (button) {
    const field = document.getElementById(button.dataset.copyFrom || "");
    if (!field) return;
    button.hidden = false;
    const label = button.textContent;
    button.addEventListener("click", function () {
      field.select();
      const done = function () {
        button.textContent = button.dataset.copied || label;
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.focus();
        });
      } else {
        field.focus();
      }
    });
  });
})();
