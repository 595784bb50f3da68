// Admin → Capacities: a refused request (400) answers with the form or table and what is wrong
// with it, and a busy capacity (409) with why. htmx drops error answers by default; where an
// element asks for it (data-show-refusals), show them instead. Kept out of the templates so the
// pages need no inline script.
document.addEventListener('htmx:beforeSwap', function (event) {
  const status = event.detail.xhr.status;
  const target = event.detail.target;
  if ((status === 400 || status === 409) && target && target.closest('[data-show-refusals]')) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
