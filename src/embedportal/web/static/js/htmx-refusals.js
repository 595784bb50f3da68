// A refused form comes back as 400 with its errors on the page; htmx drops error answers by
// default, so an element marked `data-swaps-refusals` (the _htmx.html macro) takes them in.
// Loaded by base.html on every page, beside htmx itself.
document.addEventListener('htmx:beforeSwap', function (event) {
  var target = event.target;
  if (event.detail.xhr.status !== 400 || !(target instanceof Element)) return;
  if (!target.closest('[data-swaps-refusals]')) return;
  event.detail.shouldSwap = true;
  event.detail.isError = false;
});
